// Package inference defines what every hop of an inference request shares:
// the request and chunk types, the Backend interface workers serve through,
// the error codes carried on the wire, and the inference stream protocol.
//
// # The stream protocol
//
// One request is one libp2p stream, client -> proxy and proxy -> worker, on
// protocol /cocoon/<network>/inference/1. Every message is a p2p frame
// (length-prefixed, versioned, size-capped before allocation):
//
//	requester -> server: Request
//	server -> requester: Chunk* (End | Error)
//
// The requester keeps its write side open while it waits: resetting the
// stream is how it cancels, and the server watches for that. A server that
// fails before it sent any Chunk may be retried elsewhere; after the first
// Chunk an Error frame ends the response.
//
// No hop holds a chunk back waiting for more: a hop writes each message into
// a buffer and flushes as soon as nothing more is already waiting (see
// Chunk.Pending and FrameReader.Buffered). Flushing only when the input runs
// dry adds no latency and keeps throughput under load.
package inference
