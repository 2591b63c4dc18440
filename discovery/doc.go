// Package discovery finds the peers a node works with and keeps it
// connected to them.
//
// Peers come from three places: the node's configuration (multiaddrs of
// proxies or workers), the TON root contract (its bootstrap proxies, read
// by discovery/registry), and the Kademlia DHT (discovery/dht), where
// workers provide a record per model and proxies a proxy record; gossiped
// offers (discovery/offers) say what each worker sells now.
//
// What this package runs:
//   - Keeper keeps a set of peers connected and checks each with a
//     Checker: attest it, and for a proxy's flagged workers fetch what they
//     serve;
//   - Workers is a proxy's worker-following: a worker whose offer arrives
//     (EvtOfferAccepted on the host's event bus) is connected, attested,
//     asked for its catalog and routed to; one whose offer expires is
//     dropped;
//   - Lookup runs the DHT rounds: a client or a worker looks for proxies
//     (a worker also provides its models), a proxy provides its record and
//     looks for workers of the models the network allows or that are
//     offered; Proxies takes each proxy found.
package discovery
