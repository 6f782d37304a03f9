package agentapi

import "time"

// PathRecording takes a RecordingRequest: an idempotent upsert of one
// shipped recording format by (record ID, format). The agent sends it once
// the storage has confirmed every byte of that format, and again after a
// rebuild; the balancer answers 204 and keeps the newest by ShippedAt.
const PathRecording = "/agent/v1/recording"

// RecordingRequest tells the balancer that a recording format now lives
// in the fleet's storage.
type RecordingRequest struct {
	Node      string            `json:"node"`
	Recording RecordingMetadata `json:"recording"`
}

// RecordingMetadata is a recording as its metadata.xml describes it (one
// format per metadata.xml), plus where the agent shipped it.
type RecordingMetadata struct {
	RecordID     string            `json:"record_id"`
	MeetingID    string            `json:"meeting_id"` // the BBB internal meeting ID
	ExternalID   string            `json:"external_id"`
	Name         string            `json:"name"`
	Breakout     bool              `json:"breakout,omitempty"`
	State        string            `json:"state"` // published | unpublished | available (treat as published) | deleted
	Published    bool              `json:"published"`
	StartTime    time.Time         `json:"start_time"`
	EndTime      time.Time         `json:"end_time"`
	Participants int               `json:"participants"`
	Meta         map[string]string `json:"meta,omitempty"` // every <meta> child, name → text
	RawSize      int64             `json:"raw_size"`
	Formats      []RecordingFormat `json:"formats"`

	// Storage is where the files are: "spool", "s3://bucket/prefix" or
	// "dir"; Location the object prefix or file the format was shipped to.
	Storage   string    `json:"storage,omitempty"`
	Location  string    `json:"location,omitempty"`
	ShippedAt time.Time `json:"shipped_at,omitzero"`
	// SHA256 is the hex SHA-256 of the shipped manifest (S3) or tar (spool).
	SHA256 string `json:"sha256,omitempty"`
}

// RecordingFormat is one <playback> of a metadata.xml.
type RecordingFormat struct {
	Type           string           `json:"type"` // presentation, video, podcast, notes, screenshare...
	Link           string           `json:"link"`
	ProcessingTime int64            `json:"processing_time_ms"`
	Duration       int64            `json:"duration_ms"`
	Size           int64            `json:"size"`
	Preview        []RecordingImage `json:"preview,omitempty"`
}

// RecordingImage is one preview image of a format.
type RecordingImage struct {
	URL    string `json:"url"`
	Alt    string `json:"alt,omitempty"`
	Width  int    `json:"width,omitempty"`
	Height int    `json:"height,omitempty"`
}
