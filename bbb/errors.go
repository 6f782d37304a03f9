package bbb

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Return codes of the response envelope.
const (
	ReturnSuccess = "SUCCESS"
	ReturnFailed  = "FAILED"
)

// The messageKeys this project produces or reacts to.
const (
	KeyChecksumError            = "checksumError"
	KeyMissingParamMeetingID    = "missingParamMeetingID"
	KeyMissingParam             = "missingParam"
	KeyValidationError          = "validationError"
	KeyNotFound                 = "notFound"
	KeyMeetingNotFound          = "meetingNotFound" // sendChatMessage's notFound (BBB 3.0)
	KeyInvalidPassword          = "invalidPassword"
	KeyIDNotUnique              = "idNotUnique"
	KeyDuplicateWarning         = "duplicateWarning"
	KeyInvalidMeetingIdentifier = "invalidMeetingIdentifier"
	KeyMaxParticipantsReached   = "maxParticipantsReached"
	KeySentEndMeetingRequest    = "sentEndMeetingRequest"
	KeyNoMeetings               = "noMeetings"
	KeyNoRecordings             = "noRecordings"
	KeyUnsupportedRequest       = "unsupportedRequest"
	KeyMeetingForciblyEnded     = "meetingForciblyEnded"
	KeySuccessfullyJoined       = "successfullyJoined"
	KeyDocumentInserted         = "documentInserted"
	KeyRequestTooLarge          = "requestTooLarge"
	KeyInternalError            = "internalError"
)

// APIError is a FAILED response from a BBB API server, or an error that a
// server of ours answers as one. Its MessageKey is what callers branch on.
type APIError struct {
	Call       string // the API call, when known
	MessageKey string
	Message    string
}

func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("bbb")
	if e.Call != "" {
		b.WriteString(" ")
		b.WriteString(e.Call)
	}
	fmt.Fprintf(&b, ": %s", e.MessageKey)
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	return b.String()
}

// Is makes errors.Is(err, &APIError{MessageKey: k}) match on the messageKey.
func (e *APIError) Is(target error) bool {
	t, ok := target.(*APIError)
	return ok && t.MessageKey == e.MessageKey && (t.Call == "" || t.Call == e.Call)
}

// NewError builds an APIError with the given key and message.
func NewError(key, message string) *APIError {
	return &APIError{MessageKey: key, Message: message}
}

// Common errors, as BBB words them.
var (
	ErrNotFound          = &APIError{MessageKey: KeyNotFound}
	ErrIDNotUnique       = &APIError{MessageKey: KeyIDNotUnique}
	ErrChecksum          = &APIError{MessageKey: KeyChecksumError}
	ErrValidation        = &APIError{MessageKey: KeyValidationError}
	ErrUnsupported       = &APIError{MessageKey: KeyUnsupportedRequest}
	ErrMissingMeetingID  = &APIError{MessageKey: KeyMissingParamMeetingID}
	ErrInvalidPassword   = &APIError{MessageKey: KeyInvalidPassword}
	ErrMaxParticipants   = &APIError{MessageKey: KeyMaxParticipantsReached}
	ErrInvalidIdentifier = &APIError{MessageKey: KeyInvalidMeetingIdentifier}
)

// ChecksumError is the API error for a request whose checksum fails.
func ChecksumError() *APIError {
	return NewError(KeyChecksumError, "Checksums do not match")
}

// NotFoundError is the API error for an unknown meeting.
func NotFoundError() *APIError {
	return NewError(KeyNotFound, "We could not find a meeting with that meeting ID - perhaps the meeting is not yet running?")
}

// UnsupportedError is the API error for a call the server does not serve.
func UnsupportedError(call string) *APIError {
	return NewError(KeyUnsupportedRequest, fmt.Sprintf("This server does not support the API call %q.", call))
}

// MissingMeetingIDError is the API error for a call without meetingID.
func MissingMeetingIDError() *APIError {
	return NewError(KeyMissingParamMeetingID, "You must specify a meeting ID for the meeting.")
}

// ValidateMeetingID checks a meetingID as bbb-web does: 2 to 256 characters,
// no commas, valid UTF-8 without control characters.
func ValidateMeetingID(id string) *APIError {
	if id == "" {
		return MissingMeetingIDError()
	}
	if !utf8.ValidString(id) {
		return NewError(KeyValidationError, "Meeting ID must be valid UTF-8 text.")
	}
	n := 0
	for _, r := range id {
		n++
		if r < 0x20 || r == 0x7f {
			return NewError(KeyValidationError, "Meeting ID must be valid UTF-8 text without control characters.")
		}
	}
	if n < 2 || n > 256 {
		return NewError(KeyValidationError, "Meeting ID must be between 2 and 256 characters.")
	}
	if strings.Contains(id, ",") {
		return NewError(KeyValidationError, "Meeting ID cannot contain ','.")
	}
	return nil
}
