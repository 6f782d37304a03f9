package placement

import "strings"

// NoneTag in a tag request matches untagged nodes.
const NoneTag = "none"

// TagRequest is a parsed meta_server-tag, with Scalelite's meaning:
//
//   - no tags: only untagged nodes (Required does not matter);
//   - optional (Required false): the best node having any of Tags, else the
//     best untagged node;
//   - required: only nodes having any of Tags, else ErrTagUnavailable.
//
// NoneTag among Tags matches untagged nodes. A node matches when any of its
// tags equals any of Tags; comparison is exact and case-sensitive, as
// Scalelite compares strings. Pick uses Tags as given; ParseServerTag
// produces them trimmed and non-empty.
type TagRequest struct {
	Tags     []string
	Required bool
}

// ParseServerTag parses a meta_server-tag value: one tag or a ";"-separated
// list, optionally ending in "!" to make it required. Whitespace around the
// value and around each entry is trimmed and empty entries are dropped, so
// "", "!" and " ; !" all ask for untagged nodes only, like an absent
// parameter. A "!" anywhere but at the end is part of a tag.
func ParseServerTag(v string) TagRequest {
	v = strings.TrimSpace(v)
	required := strings.HasSuffix(v, "!")
	v = strings.TrimSuffix(v, "!")
	var tags []string
	for part := range strings.SplitSeq(v, ";") {
		if t := strings.TrimSpace(part); t != "" {
			tags = append(tags, t)
		}
	}
	if len(tags) == 0 {
		return TagRequest{}
	}
	return TagRequest{Tags: tags, Required: required}
}

// tagged reports whether a node has a tag; empty strings do not count.
func tagged(nodeTags []string) bool {
	for _, t := range nodeTags {
		if t != "" {
			return true
		}
	}
	return false
}

// matches reports whether a node with nodeTags matches a request for want;
// noneListed says want holds NoneTag.
func matches(nodeTags, want []string, noneListed bool) bool {
	if !tagged(nodeTags) {
		return noneListed
	}
	for _, t := range nodeTags {
		if t == "" {
			continue
		}
		for _, w := range want {
			if t == w {
				return true
			}
		}
	}
	return false
}
