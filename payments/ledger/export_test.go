package ledger

import (
	"context"

	bolt "go.etcd.io/bbolt"
)

// PutBoltBatch is Put through bbolt's own DB.Batch instead of the
// committer, for the benchmark that compares the two.
func PutBoltBatch(_ context.Context, l *Ledger, id ID, st State) error {
	return l.db.Batch(func(tx *bolt.Tx) error { return applyAll(tx.Bucket(bucket), []Channel{{ID: id, State: st}}) })
}

// Decode and Encode are the stored form, for the fuzz test.
var (
	Decode = decode
	Encode = encode
)
