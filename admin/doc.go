// Package admin is a node's operator surface: the admin API it serves on
// loopback for `cocoon status`, `cocoon doctor` and `cocoon channel`, the
// Prometheus metrics, and the web dashboard.
//
// It owns what an operator is told and how: the Status and PaymentsStatus
// a node reports (their JSON is the API), the doctor's checks with what
// passes, warns or fails and how to fix it, the metrics derived from the
// status, the dashboard's files, and the guard that keeps the API to its
// operator (loopback Host, no cross-site writes, a strict CSP, and a token
// drawn at each start, kept 0600 in the data dir, on every request: loopback
// is not a trust boundary).
//
// It reads a node's state through small interfaces declared here and
// implemented by the domain types themselves: a Node for what every node
// has, an Attestation, one Role (a Worker, a Proxy or a Client, each with
// only what that role has), and, where the node has them, a Registry, a
// DHT and Payments. It never changes the node's state, except through the
// payment-channel routes, which call the channel manager.
//
//	srv := admin.New(admin.Config{Addr: "127.0.0.1:9100", DataDir: dir, Network: "local"},
//		node, admin.Attestation{Handshaker: hs, Validator: kinds, Key: pub},
//		admin.Proxy{Router: r, Workers: keeper, Offers: book}, requests, log,
//		admin.WithDHT(d))
//	if err := srv.Start(ctx); err != nil { ... } // listens; writes <DataDir>/admin.token, then admin.url
//	defer srv.Close()                            // removes them
package admin
