// Package sim is bbb-sim, a BigBlueButton server simulator that the
// balancer's and the agent's tests stand on: the BBB API at the wire level,
// with bbb-web's checksum rules, messageKeys and meeting lifecycle, plus a
// JSON control API to drive meetings and inject faults.
//
// # The BBB API
//
// A Server serves /bigbluebutton/api/ (create, join, end, isMeetingRunning,
// getMeetingInfo, getMeetings, insertDocument, sendChatMessage, getRecordings,
// publishRecordings, updateRecordings, deleteRecordings) and the unsigned
// root /bigbluebutton/api. Meetings live in memory. Every error is a FAILED
// envelope with HTTP 200; unknown calls and wrong HTTP methods answer
// unsupportedRequest. The simulator does not expire meetings: a meeting
// without users runs until the end call or the control API ends it.
//
// A meeting created with record=true that someone joined publishes a
// recording when it ends. With Config.RecordingsDir (the simulator's
// /var/bigbluebutton) it is written as bbb-record-core does:
//
//	published/presentation/<record_id>/{video/webcams.webm, deskshare/deskshare.webm,
//	    presentation/<id>/slide-1.png, ..., shapes.svg, panzooms.xml, cursor.xml,
//	    events.xml, ..., metadata.xml}
//	recording/status/published/<record_id>-presentation.done
//
// metadata.xml is written after the data files (temporary file and rename)
// and the marker last. publishRecordings and deleteRecordings move the
// directory to unpublished/ or deleted/. New reads these directories back.
//
// # The control API
//
// Unsigned JSON under /sim/, for tests only; faults never apply to it. Each
// endpoint has a Server method for in-process tests. Errors answer
// {"error": "..."} with 400, or 404 for an unknown meeting.
//
//	GET  /sim/state              State: meetings with counts, recordings, per-call request counters, faults
//	POST /sim/reset              Reset
//	POST /sim/attendees          {"meetingID", "count", "role", "voice", "listenOnly", "video", "fullName"}
//	                             AddAttendees → {"userIDs": [...]}
//	POST /sim/attendees/remove   {"meetingID", "count"} or {"meetingID", "all": true}
//	                             RemoveAttendees → {"removed": n}
//	POST /sim/breakouts          {"meetingID", "rooms", "attendeesPerRoom", "record", "freeJoin"}
//	                             AddBreakouts → {"meetingIDs": [...]}
//	POST /sim/end                {"meetingID", "natural": true|false}  EndMeeting
//	POST /sim/latency            {"latency": "250ms"}                  SetLatency → Faults
//	POST /sim/failures           {"rate": 0.5, "mode": "http500"|"close"}
//	                             SetFailureRate → Faults
//	POST /sim/answering          {"mode": "normal"|"refuse"|"hang"}    SetAnswering → Faults
package sim
