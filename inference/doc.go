// Package inference defines what every hop of an inference request shares:
// the request and chunk types, the Backend interface workers serve through,
// the error codes carried on the wire, and the inference stream protocol.
//
// # The stream protocol
//
// Requests travel on libp2p streams, client -> proxy and proxy -> worker,
// on protocol /cocoon/<network>/inference/1. Every message is a p2p frame
// (length-prefixed, versioned, size-capped before allocation). A stream
// carries requests one after another, never two at once:
//
//	requester -> server: Request
//	server -> requester: Chunk* (End | Error)
//	requester -> server: Request          (the next one, on the same stream)
//	...
//
// A client node seals its requests end to end (package inference/seal):
// the Request's body is then a sealed request only the candidate workers
// can open, its header (AppendHeader) the routing header hops read and
// forward unchanged, and the answer comes back as Record frames only the
// client opens, then the End in the clear (docs/protocol.md).
//
// Requesters keep idle streams in a Pool and servers serve them with
// ServeRequests, so a request rarely pays for opening a stream. The
// requester keeps its write side open: resetting the stream is how it
// cancels, and the server, whose reader sits in Read for the stream's
// whole life, cancels the request at once. A server that fails before it
// sent any Chunk may be retried elsewhere; after the first Chunk an Error
// frame ends the response.
//
// No hop holds a chunk back waiting for more: a hop writes each message into
// a buffer and flushes as soon as nothing more is already waiting (see
// Chunk.Pending and FrameReader.Buffered). Flushing only when the input runs
// dry adds no latency and keeps throughput under load.
package inference
