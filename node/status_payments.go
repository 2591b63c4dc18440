package node

// PaymentsStatus is what a node has earned and spent through its payment
// channels, in nanoTON.
type PaymentsStatus struct {
	Earned   int64           `json:"earned_nanoton"`
	Spent    int64           `json:"spent_nanoton"`
	Channels []ChannelStatus `json:"channels,omitempty"`
}

// ChannelStatus is one payment channel as this node holds it.
type ChannelStatus struct {
	Peer     string `json:"peer"`
	Address  string `json:"address"`
	Role     string `json:"role"` // "payer" or "payee": this node's side of the channel
	Deposit  int64  `json:"deposit_nanoton"`
	Sent     int64  `json:"sent_nanoton"`
	Received int64  `json:"received_nanoton"`
	Unsigned int64  `json:"unsigned_nanoton"` // credit beyond the last signed state
	Seqno    uint64 `json:"seqno"`
	State    string `json:"state"`
}
