package balancer

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/bbb-agent/bbb-agent/balancer/store"
	"github.com/bbb-agent/bbb-agent/bbb"
)

// trackAnswer is BBB's answer to getRecordingTextTracks and
// putRecordingTextTrack: JSON, unlike every other call.
type trackAnswer struct {
	Response trackResponse `json:"response"`
}

type trackResponse struct {
	ReturnCode string      `json:"returncode"`
	MessageKey string      `json:"messageKey,omitempty"`
	Message    string      `json:"message,omitempty"`
	Tracks     *[]struct{} `json:"tracks,omitempty"`
}

// textTracks answers the caption-track calls in BBB's JSON. The balancer
// keeps no caption tracks: a recording it indexes lists none, and an upload
// is refused with what to do instead; an unknown recording is noRecordings,
// as BBB answers.
func (s *Server) textTracks(ctx context.Context, w *resultRecorder, req *apiRequest) {
	answer := func(r trackResponse) {
		w.outcome = r.ReturnCode
		writeJSON(w, http.StatusOK, trackAnswer{r})
	}
	recordID := req.params.Get("recordID")
	if recordID == "" {
		answer(trackResponse{ReturnCode: bbb.ReturnFailed, MessageKey: "missingParamRecordID", Message: "You must specify a recordID."})
		return
	}
	_, err := s.store.Recording(ctx, recordID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		answer(trackResponse{ReturnCode: bbb.ReturnFailed, MessageKey: "noRecordings", Message: "No recording found for " + recordID})
	case err != nil:
		s.log.Warn("looking up a recording's text tracks", "recordID", recordID, "err", err)
		answer(trackResponse{ReturnCode: bbb.ReturnFailed, MessageKey: "internalError", Message: "The balancer's database did not answer; try again."})
	case req.call == bbb.CallGetRecordingTextTracks:
		answer(trackResponse{ReturnCode: bbb.ReturnSuccess, Tracks: &[]struct{}{}})
	default:
		answer(trackResponse{ReturnCode: bbb.ReturnFailed, MessageKey: "unsupportedRequest",
			Message: fmt.Sprintf("bbb-balancer keeps no caption tracks of recording %s: upload the track to the BBB server that recorded it.", recordID)})
	}
}
