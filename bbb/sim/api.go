package sim

import (
	"cmp"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/bbb-agent/bbb-agent/bbb"
)

// messageKeys bbb-web uses that package bbb has no constant for.
const (
	keyMissingParamFullName  = "missingParamFullName"
	keyMismatchCreateTime    = "mismatchCreateTimeParam"
	keyNonUniqueVoiceBridge  = "nonUniqueVoiceBridge"
	keyParentMeetingIDMissed = "parentMeetingIdMissing"
	keyMissingParamRecordID  = "missingParamRecordID"
	keyMissingParamPublish   = "missingParamPublish"
)

func parseBool(v string) bool { return strings.EqualFold(strings.TrimSpace(v), "true") }

// meetingIDParam returns the request's meetingID, trimmed and validated as bbb-web does.
func meetingIDParam(q *apiRequest) (string, *bbb.APIError) {
	id := strings.TrimSpace(q.get("meetingID"))
	return id, bbb.ValidateMeetingID(id)
}

// intParam reads an optional non-negative integer parameter; absent is 0.
func intParam(q *apiRequest, key string) (int, *bbb.APIError) {
	v := strings.TrimSpace(q.get(key))
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, bbb.NewError(bbb.KeyValidationError, fmt.Sprintf("Parameter %s must be a non-negative integer, not %q.", key, v))
	}
	return n, nil
}

func createResponse(m *meeting, key, message string) bbb.CreateResponse {
	parent := noParent
	if m.info.IsBreakout {
		parent = m.info.ParentMeetingID
	}
	return bbb.CreateResponse{
		ReturnCode:           bbb.ReturnSuccess,
		MeetingID:            m.info.MeetingID,
		InternalMeetingID:    m.info.InternalMeetingID,
		ParentMeetingID:      parent,
		AttendeePW:           m.info.AttendeePW,
		ModeratorPW:          m.info.ModeratorPW,
		CreateTime:           m.info.CreateTime,
		VoiceBridge:          m.info.VoiceBridge,
		DialNumber:           m.info.DialNumber,
		CreateDate:           m.info.CreateDate,
		HasUserJoined:        m.info.HasUserJoined,
		Duration:             m.info.Duration,
		HasBeenForciblyEnded: m.info.HasBeenForciblyEnded,
		MessageKey:           key,
		Message:              message,
	}
}

func (s *Server) create(q *apiRequest) {
	id, apiErr := meetingIDParam(q)
	if apiErr != nil {
		s.fail(q.w, apiErr)
		return
	}
	p := createParams{
		meetingID:   id,
		name:        q.get("name"),
		attendeePW:  q.get("attendeePW"),
		moderatorPW: q.get("moderatorPW"),
		voiceBridge: strings.TrimSpace(q.get("voiceBridge")),
		record:      parseBool(q.get("record")),
		meta:        bbb.MetaFromValues(q.params),
		freeJoin:    parseBool(q.get("freeJoin")),
		host:        q.r.Host,
	}
	var errDuration, errMax, errSequence *bbb.APIError
	p.duration, errDuration = intParam(q, "duration")
	p.maxParticipants, errMax = intParam(q, "maxParticipants")
	p.sequence, errSequence = intParam(q, "sequence")
	if apiErr = cmp.Or(errDuration, errMax, errSequence); apiErr != nil {
		s.fail(q.w, apiErr)
		return
	}
	if len(q.body) > 0 {
		docs, err := bbb.ParseModules(q.body)
		if err != nil {
			s.fail(q.w, bbb.NewError(bbb.KeyValidationError, err.Error()))
			return
		}
		p.documents = len(docs)
	}
	parentID := strings.TrimSpace(q.get("parentMeetingID"))
	isBreakout := parseBool(q.get("isBreakout"))
	if isBreakout && parentID == "" {
		s.fail(q.w, bbb.NewError(keyParentMeetingIDMissed, "No parent meeting ID was provided for the breakout room."))
		return
	}

	s.mu.Lock()
	m, key, apiErr := s.createLocked(p, isBreakout, parentID)
	if apiErr != nil {
		s.mu.Unlock()
		s.fail(q.w, apiErr)
		return
	}
	buf := s.encode(createResponse(m, key, duplicateMessage(key)))
	internalID := m.info.InternalMeetingID
	s.mu.Unlock()
	if key == "" {
		s.log.Info("meeting created", "meeting_id", id, "internal_meeting_id", internalID, "record", p.record)
	}
	send(q.w, buf)
}

func duplicateMessage(key string) string {
	if key == bbb.KeyDuplicateWarning {
		return "This conference was already in existence and may currently be in progress."
	}
	return ""
}

// createLocked answers a create with the existing meeting (and the
// duplicateWarning key) or a new one.
func (s *Server) createLocked(p createParams, isBreakout bool, parentID string) (*meeting, string, *bbb.APIError) {
	if ex := s.meetings[p.meetingID]; ex != nil && !ex.ended {
		// bbb-web: a repeat is a duplicate when it gives both passwords as
		// before, or neither. The simulator also holds the name to its first value.
		pwConflict := (p.attendeePW != "" || p.moderatorPW != "") &&
			(p.attendeePW != ex.info.AttendeePW || p.moderatorPW != ex.info.ModeratorPW)
		if pwConflict || p.name != "" && p.name != ex.info.MeetingName {
			return nil, "", bbb.NewError(bbb.KeyIDNotUnique, "A meeting already exists with that meeting ID.  Please use a different meeting ID.")
		}
		return ex, bbb.KeyDuplicateWarning, nil
	}
	if isBreakout {
		p.parent = s.byInternalIDLocked(parentID)
		if p.parent == nil {
			if byExternal := s.meetings[parentID]; byExternal != nil && !byExternal.ended {
				p.parent = byExternal
			}
		}
		if p.parent == nil {
			return nil, "", bbb.NewError(bbb.KeyNotFound, "The parent meeting of the breakout room does not exist.")
		}
		if p.sequence == 0 {
			p.sequence = len(p.parent.breakouts) + 1
		}
	}
	if p.voiceBridge != "" && s.voiceBridgeOwnerLocked(p.voiceBridge) != nil {
		return nil, "", bbb.NewError(keyNonUniqueVoiceBridge, "The selected voice bridge is already in use.")
	}
	return s.newMeetingLocked(p), "", nil
}

func (s *Server) join(q *apiRequest) {
	fullName := strings.TrimSpace(q.get("fullName"))
	if fullName == "" {
		s.fail(q.w, bbb.NewError(keyMissingParamFullName, "You must specify a name for the attendee who will be joining the meeting."))
		return
	}
	id, apiErr := meetingIDParam(q)
	if apiErr != nil {
		s.fail(q.w, apiErr)
		return
	}
	redirect := true
	if v, ok := q.params["redirect"]; ok && len(v) > 0 {
		redirect = parseBool(v[0])
	}
	internalUserID := "w_" + s.randString(lowerAlnum, 12)
	authToken := s.randString(lowerAlnum, 12)
	sessionToken := s.randString(lowerAlnum, 16)
	userID := strings.TrimSpace(q.get("userID"))
	if userID == "" {
		userID = internalUserID
	}

	s.mu.Lock()
	internalMeetingID, apiErr := s.joinLocked(q, id, bbb.Attendee{UserID: userID, FullName: fullName, ClientType: "HTML5"})
	s.mu.Unlock()
	if apiErr != nil {
		s.fail(q.w, apiErr)
		return
	}

	dest := s.cfg.ClientURL
	if dest == "" {
		dest = "http://" + q.r.Host + "/html5client/join"
	}
	sep := "?"
	if strings.Contains(dest, "?") {
		sep = "&"
	}
	dest += sep + "sessionToken=" + sessionToken
	if redirect {
		q.w.Header().Set("Cache-Control", "no-cache")
		http.Redirect(q.w, q.r, dest, http.StatusFound)
		return
	}
	s.respond(q.w, bbb.JoinResponse{
		ReturnCode:   bbb.ReturnSuccess,
		MessageKey:   bbb.KeySuccessfullyJoined,
		Message:      "You have joined successfully.",
		MeetingID:    internalMeetingID,
		UserID:       internalUserID,
		AuthToken:    authToken,
		SessionToken: sessionToken,
		GuestStatus:  "ALLOW",
		URL:          dest,
	})
}

// joinLocked checks a join in bbb-web's order and adds the attendee.
func (s *Server) joinLocked(q *apiRequest, id string, a bbb.Attendee) (string, *bbb.APIError) {
	m := s.meetings[id]
	if m == nil {
		return "", bbb.NewError(bbb.KeyInvalidMeetingIdentifier, "The meeting ID that you supplied did not match any existing meetings")
	}
	if v, ok := q.params["createTime"]; ok && len(v) > 0 {
		if ct, err := strconv.ParseInt(strings.TrimSpace(v[0]), 10, 64); err != nil || ct != m.info.CreateTime {
			return "", bbb.NewError(keyMismatchCreateTime, "The createTime parameter submitted mismatches with the current meeting.")
		}
	}
	if m.ended {
		return "", bbb.NewError(bbb.KeyMeetingForciblyEnded, "You can not re-join a meeting that has already been forcibly ended.")
	}
	switch role, password := strings.ToUpper(strings.TrimSpace(q.get("role"))), q.get("password"); {
	case role == bbb.RoleModerator || role == bbb.RoleViewer:
		a.Role = role
	case password != "" && password == m.info.ModeratorPW:
		a.Role = bbb.RoleModerator
	case password != "" && password == m.info.AttendeePW:
		a.Role = bbb.RoleViewer
	default:
		return "", bbb.NewError(bbb.KeyInvalidPassword, "You either did not supply a password or the password supplied is neither the attendee or moderator password for this conference.")
	}
	if limit := m.info.MaxUsers; limit > 0 && len(m.info.Attendees) >= limit && m.attendeeIndex(a.UserID) < 0 {
		return "", bbb.NewError(bbb.KeyMaxParticipantsReached, "The number of participants allowed for this meeting has been reached.")
	}
	s.addAttendeeLocked(m, a)
	return m.info.InternalMeetingID, nil
}

func (s *Server) end(q *apiRequest) {
	id, apiErr := meetingIDParam(q)
	if apiErr != nil {
		s.fail(q.w, apiErr)
		return
	}
	s.mu.Lock()
	m := s.meetings[id]
	if m == nil {
		s.mu.Unlock()
		s.fail(q.w, bbb.NotFoundError())
		return
	}
	recs := s.endLocked(m, true)
	s.mu.Unlock()
	s.log.Info("meeting ended", "meeting_id", id, "forcibly", true)
	s.publish(recs)
	s.respond(q.w, bbb.EndResponse{
		ReturnCode: bbb.ReturnSuccess,
		MessageKey: bbb.KeySentEndMeetingRequest,
		Message:    "A request to end the meeting was sent.  Please wait a few seconds, and then use the getMeetingInfo or isMeetingRunning API calls to verify that it was ended.",
	})
}

func (s *Server) isMeetingRunning(q *apiRequest) {
	id, apiErr := meetingIDParam(q)
	if apiErr != nil {
		s.fail(q.w, apiErr)
		return
	}
	s.mu.RLock()
	m := s.meetings[id]
	running := m != nil && m.info.Running
	s.mu.RUnlock()
	s.respond(q.w, bbb.IsMeetingRunningResponse{ReturnCode: bbb.ReturnSuccess, Running: running})
}

func (s *Server) getMeetingInfo(q *apiRequest) {
	id, apiErr := meetingIDParam(q)
	if apiErr != nil {
		s.fail(q.w, apiErr)
		return
	}
	s.mu.RLock()
	m := s.meetings[id]
	if m == nil {
		s.mu.RUnlock()
		s.fail(q.w, bbb.NotFoundError())
		return
	}
	buf := s.encode(bbb.GetMeetingInfoResponse{ReturnCode: bbb.ReturnSuccess, Meeting: m.info})
	s.mu.RUnlock()
	send(q.w, buf)
}

func (s *Server) getMeetings(q *apiRequest) {
	s.mu.RLock()
	active := s.activeLocked()
	resp := bbb.GetMeetingsResponse{ReturnCode: bbb.ReturnSuccess, Meetings: make([]bbb.Meeting, len(active))}
	for i, m := range active {
		resp.Meetings[i] = m.info
	}
	if len(active) == 0 {
		resp.MessageKey, resp.Message = bbb.KeyNoMeetings, "no meetings were found on this server"
	}
	buf := s.encode(resp)
	s.mu.RUnlock()
	send(q.w, buf)
}

// sendChatMessage posts a message to a running meeting's public chat (BBB
// 3.0): message of 1 to 500 characters, userName of at most 255; an unknown
// or ended meeting is meetingNotFound; success carries no messageKey.
func (s *Server) sendChatMessage(q *apiRequest) {
	id, apiErr := meetingIDParam(q)
	if apiErr != nil {
		s.fail(q.w, apiErr)
		return
	}
	msg := q.get("message")
	if n := utf8.RuneCountInString(msg); n < 1 || n > 500 {
		s.fail(q.w, bbb.NewError(bbb.KeyValidationError, "The message must be between 1 and 500 characters."))
		return
	}
	if utf8.RuneCountInString(q.get("userName")) > 255 {
		s.fail(q.w, bbb.NewError(bbb.KeyValidationError, "The userName must be at most 255 characters."))
		return
	}
	s.mu.Lock()
	m := s.meetings[id]
	found := m != nil && !m.ended
	if found {
		m.chatMessages++
	}
	s.mu.Unlock()
	if !found {
		s.fail(q.w, bbb.NewError(bbb.KeyMeetingNotFound, "A meeting with that ID does not exist or has ended."))
		return
	}
	s.respond(q.w, bbb.Envelope{ReturnCode: bbb.ReturnSuccess})
}

func (s *Server) insertDocument(q *apiRequest) {
	id, apiErr := meetingIDParam(q)
	if apiErr != nil {
		s.fail(q.w, apiErr)
		return
	}
	if len(q.body) == 0 {
		s.fail(q.w, bbb.NewError(bbb.KeyValidationError, "insertDocument needs an XML <modules> body."))
		return
	}
	docs, err := bbb.ParseModules(q.body)
	if err != nil {
		s.fail(q.w, bbb.NewError(bbb.KeyValidationError, err.Error()))
		return
	}
	s.mu.Lock()
	m := s.meetings[id]
	found := m != nil && !m.ended
	if found {
		m.documents += len(docs)
	}
	s.mu.Unlock()
	if !found {
		s.fail(q.w, bbb.NotFoundError())
		return
	}
	s.respond(q.w, bbb.InsertDocumentResponse{ReturnCode: bbb.ReturnSuccess, MessageKey: bbb.KeyDocumentInserted, Message: "Presentation is being uploaded"})
}
