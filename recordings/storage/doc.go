// Package storage owns where a finished recording goes when it leaves a
// BBB node: one small interface (Storage) and its back-ends, chosen by URL:
//
//   - none: recordings stay on the node (Open returns None).
//   - spool:/path: Scalelite's transfer format, one uncompressed
//     <record_id>.tar per recording whose entries are <format>/<record_id>/...
//     for every format present on the node, written under a temporary name,
//     fsynced and renamed, so an importer never sees a partial file.
//   - dir:/path: BBB's own layout, <path>/published/<format>/<record_id>/,
//     each format copied beside its place, fsynced and renamed in whole.
//   - s3://bucket/prefix: every file to <prefix>/<format>/<record_id>/<path>
//     with a SHA-256 checksum, then <prefix>/<format>/<record_id>/manifest.json
//     last, as the commit marker. An object whose SHA-256 already matches is
//     not written again. Once the manifest is in place, the objects under
//     the prefix it does not list (an earlier build's) are deleted; a crash
//     before that leaves only unlisted extras, removed by the next ship.
//
// Ship returns only once the destination has confirmed every byte; it
// streams files and never holds one in memory.
package storage
