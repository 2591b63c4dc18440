// Package discovery finds the peers a node works with and keeps it
// connected to them. For now the peers are a static list of multiaddrs from
// the node's configuration; the Kademlia DHT seeded from the TON root
// contract and gossiped offers replace it (issue [2/6]).
package discovery
