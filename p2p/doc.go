// Package p2p holds what every Cocoon node shares on the wire: the libp2p
// host (TCP and QUIC, Noise and TLS, yamux, resource and connection
// manager limits), the node's persistent identity key, protocol IDs of the
// form /cocoon/<network>/<name>/<version>, length-prefixed versioned frames
// with a size cap checked before allocation, and the one recipe every
// stream handler follows (Service.Handle).
package p2p
