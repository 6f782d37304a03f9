// Package recordings owns a BBB node's finished recordings on their way to
// shared storage: finding them (Scan, a notify from BBB's post_publish
// hook), a durable queue in the agent's state directory (SQLite, one row
// per record ID and format), and the Shipper, whose workers ship each row
// through a storage back-end (package storage), retry with capped backoff,
// quarantine bad input, tell the fleet through an Indexer, and optionally
// delete the local copy once the destination has confirmed every byte.
//
// The invariants, kept across a kill -9 at any instant: a recording is
// never lost (a row is written before anything ships and only leaves the
// queue when shipped), never written twice at the destination for the same
// content (the back-ends skip what is already there), and never deleted
// locally before the destination confirmed it (the delete reads the
// confirmation from the queue, written after the back-end returned). A
// rebuild shipped again replaces the earlier build at the destination:
// its files that the new build no longer has are removed only once the
// new build is complete there (s3: after its manifest).
package recordings
