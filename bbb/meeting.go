package bbb

import (
	"crypto/sha1"
	"encoding/hex"
	"strconv"
	"time"
)

// InternalMeetingID is the ID bbb-web gives one incarnation of a meeting:
// sha1hex(meetingID) + "-" + createTime in milliseconds.
func InternalMeetingID(meetingID string, createTimeMs int64) string {
	sum := sha1.Sum([]byte(meetingID))
	return hex.EncodeToString(sum[:]) + "-" + strconv.FormatInt(createTimeMs, 10)
}

// createDateLayout is Java's Date.toString(), which BBB uses for createDate.
const createDateLayout = "Mon Jan 02 15:04:05 MST 2006"

// CreateDate formats a time as BBB's createDate field.
func CreateDate(t time.Time) string { return t.UTC().Format(createDateLayout) }
