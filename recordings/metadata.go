package recordings

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/bbb-agent/bbb-agent/agentapi"
)

// maxMetadataBytes bounds a metadata.xml: a real one is a few kilobytes.
const maxMetadataBytes = 4 << 20

// ErrBadMetadata marks a metadata.xml that is missing or cannot be used:
// the recording is quarantined, not retried.
var ErrBadMetadata = errors.New("bad metadata.xml")

type metadataXML struct {
	XMLName      xml.Name `xml:"recording"`
	ID           string   `xml:"id"`
	State        string   `xml:"state"`
	Published    string   `xml:"published"`
	StartTime    string   `xml:"start_time"`
	EndTime      string   `xml:"end_time"`
	Participants string   `xml:"participants"`
	Meeting      struct {
		ID         string `xml:"id,attr"`
		ExternalID string `xml:"externalId,attr"`
		Name       string `xml:"name,attr"`
		Breakout   string `xml:"breakout,attr"`
	} `xml:"meeting"`
	Meta struct {
		Items []struct {
			XMLName xml.Name
			Value   string `xml:",chardata"`
		} `xml:",any"`
	} `xml:"meta"`
	Playback []struct {
		Format         string `xml:"format"`
		Link           string `xml:"link"`
		ProcessingTime string `xml:"processing_time"`
		Duration       string `xml:"duration"`
		Size           string `xml:"size"`
		Images         []struct {
			URL    string `xml:",chardata"`
			Alt    string `xml:"alt,attr"`
			Width  string `xml:"width,attr"`
			Height string `xml:"height,attr"`
		} `xml:"extensions>preview>images>image"`
	} `xml:"playback"`
	RawSize string `xml:"raw_size"`
}

// ReadMetadata parses the metadata.xml of a format directory.
func ReadMetadata(dir string) (agentapi.RecordingMetadata, error) {
	f, err := os.Open(dir + "/metadata.xml")
	if errors.Is(err, os.ErrNotExist) {
		return agentapi.RecordingMetadata{}, fmt.Errorf("%w: %s/metadata.xml does not exist", ErrBadMetadata, dir)
	}
	if err != nil {
		return agentapi.RecordingMetadata{}, err
	}
	defer f.Close()
	m, err := ParseMetadata(f)
	if err != nil {
		return m, fmt.Errorf("%s/metadata.xml: %w", dir, err)
	}
	return m, nil
}

// ParseMetadata parses a metadata.xml as BBB writes it. Errors wrap
// ErrBadMetadata.
func ParseMetadata(r io.Reader) (agentapi.RecordingMetadata, error) {
	var x metadataXML
	b, err := io.ReadAll(io.LimitReader(r, maxMetadataBytes+1))
	if err != nil {
		return agentapi.RecordingMetadata{}, err
	}
	if len(b) > maxMetadataBytes {
		return agentapi.RecordingMetadata{}, fmt.Errorf("%w: larger than %d bytes", ErrBadMetadata, maxMetadataBytes)
	}
	if err := xml.Unmarshal(b, &x); err != nil {
		return agentapi.RecordingMetadata{}, fmt.Errorf("%w: %v", ErrBadMetadata, err)
	}
	id := strings.TrimSpace(x.ID)
	if id == "" {
		return agentapi.RecordingMetadata{}, fmt.Errorf("%w: no <id>", ErrBadMetadata)
	}
	var errs []error
	num := func(field, s string) int64 {
		s = strings.TrimSpace(s)
		if s == "" {
			return 0
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("<%s> %q is not a number", field, s))
		}
		return n
	}
	ms := func(field, s string) time.Time {
		n := num(field, s)
		if n == 0 {
			return time.Time{}
		}
		return time.UnixMilli(n).UTC()
	}
	m := agentapi.RecordingMetadata{
		RecordID:     id,
		MeetingID:    strings.TrimSpace(x.Meeting.ID),
		ExternalID:   x.Meeting.ExternalID,
		Name:         x.Meeting.Name,
		Breakout:     x.Meeting.Breakout == "true",
		State:        strings.TrimSpace(x.State),
		StartTime:    ms("start_time", x.StartTime),
		EndTime:      ms("end_time", x.EndTime),
		Participants: int(num("participants", x.Participants)),
		RawSize:      num("raw_size", x.RawSize),
	}
	// The video format writes <state>available</state>: published.
	m.Published = strings.TrimSpace(x.Published) == "true" || m.State == "available"
	if len(x.Meta.Items) > 0 {
		m.Meta = make(map[string]string, len(x.Meta.Items))
		for _, it := range x.Meta.Items {
			m.Meta[it.XMLName.Local] = strings.TrimSpace(it.Value)
		}
	}
	for _, p := range x.Playback {
		f := agentapi.RecordingFormat{
			Type:           strings.TrimSpace(p.Format),
			Link:           strings.TrimSpace(p.Link),
			ProcessingTime: num("processing_time", p.ProcessingTime),
			Duration:       num("duration", p.Duration),
			Size:           num("size", p.Size),
		}
		for _, im := range p.Images {
			w, _ := strconv.Atoi(strings.TrimSpace(im.Width))
			h, _ := strconv.Atoi(strings.TrimSpace(im.Height))
			f.Preview = append(f.Preview, agentapi.RecordingImage{URL: strings.TrimSpace(im.URL), Alt: im.Alt, Width: w, Height: h})
		}
		m.Formats = append(m.Formats, f)
	}
	if len(m.Formats) == 0 {
		errs = append(errs, errors.New("no <playback><format>"))
	}
	if len(errs) > 0 {
		return m, fmt.Errorf("%w: %w", ErrBadMetadata, errors.Join(errs...))
	}
	return m, nil
}
