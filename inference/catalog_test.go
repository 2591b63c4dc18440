package inference_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/cocoon-mesh/cocoon/inference"
	"github.com/cocoon-mesh/cocoon/p2p"
	"github.com/cocoon-mesh/cocoon/p2p/p2ptest"
)

var catalogProto = p2p.ProtocolID("local", inference.CatalogProtocolName, inference.CatalogProtocolVersion)

func TestDecodeCatalog(t *testing.T) {
	models := func(n int) string {
		var ids []string
		for i := range n {
			ids = append(ids, fmt.Sprintf(`{"id":"m%d"}`, i))
		}
		return `{"models":[` + strings.Join(ids, ",") + `]}`
	}
	tests := []struct {
		name    string
		in      string
		want    *inference.Catalog
		wantErr bool
	}{
		{"worker", `{"models":[{"id":"sim-small","simulated":true}],"max_concurrent":64,"active":3}`,
			&inference.Catalog{Models: []inference.Model{{ID: "sim-small", Simulated: true}}, MaxConcurrent: 64, Active: 3}, false},
		{"proxy", `{"models":[{"id":"a","workers":2},{"id":"b","workers":1}]}`,
			&inference.Catalog{Models: []inference.Model{{ID: "a", Workers: 2}, {ID: "b", Workers: 1}}}, false},
		{"empty", `{}`, &inference.Catalog{}, false},
		{"no models", `{"models":[]}`, &inference.Catalog{Models: []inference.Model{}}, false},
		{"1024 models", models(1024), nil, false},
		{"model ID of 256 bytes", `{"models":[{"id":"` + strings.Repeat("m", 256) + `"}]}`, nil, false},
		{"1025 models", models(1025), nil, true},
		{"empty model ID", `{"models":[{"id":""}]}`, nil, true},
		{"model without ID", `{"models":[{"simulated":true}]}`, nil, true},
		{"model ID of 257 bytes", `{"models":[{"id":"` + strings.Repeat("m", 257) + `"}]}`, nil, true},
		{"negative max_concurrent", `{"models":[],"max_concurrent":-1}`, nil, true},
		{"negative active", `{"models":[],"active":-1}`, nil, true},
		{"not JSON", `{"models":`, nil, true},
		{"wrong types", `{"models":"all"}`, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := inference.DecodeCatalog([]byte(tt.in))
			if tt.wantErr {
				if !errors.Is(err, inference.ErrMalformed) {
					t.Fatalf("got %+v, %v; want ErrMalformed", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.want != nil && !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestFetchCatalog(t *testing.T) {
	want := &inference.Catalog{Models: []inference.Model{{ID: "sim-small", Simulated: true}, {ID: "other"}}, MaxConcurrent: 8, Active: 1}
	tests := []struct {
		name    string
		serve   func(s network.Stream) error
		wantErr error // nil: want the catalog
	}{
		{"good", func(s network.Stream) error { return inference.ServeCatalog(s, want) }, nil},
		{"invalid catalog", func(s network.Stream) error {
			return inference.ServeCatalog(s, &inference.Catalog{Models: []inference.Model{{ID: ""}}})
		}, inference.ErrMalformed},
		{"wrong frame type", func(s network.Stream) error {
			b, _ := json.Marshal(want)
			_, err := s.Write(p2p.AppendFrame(nil, 9, b))
			return err
		}, inference.ErrMalformed},
		{"closed without an answer", func(s network.Stream) error { return nil }, nil},
		{"reset without an answer", func(s network.Stream) error { return errors.New("no") }, network.ErrReset},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server, client, sv := hostPair(t)
			sv.Handle(catalogProto, 0, func(_ context.Context, s network.Stream) error { return tt.serve(s) })
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			got, err := inference.FetchCatalog(ctx, client, server.ID(), catalogProto)
			switch {
			case tt.name == "closed without an answer":
				if err == nil {
					t.Fatalf("got %+v from a server that sent nothing", got)
				}
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got %+v, %v; want %v", got, err, tt.wantErr)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("got %+v, want %+v", got, want)
				}
			}
		})
	}
}

func TestFetchCatalogHonoursContext(t *testing.T) {
	server, client, sv := hostPair(t)
	release := make(chan struct{})
	defer close(release)
	sv.Handle(catalogProto, 0, func(ctx context.Context, s network.Stream) error {
		select { // never answers
		case <-release:
		case <-ctx.Done():
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := inference.FetchCatalog(ctx, client, server.ID(), catalogProto)
		done <- err
	}()
	if err := p2ptest.WaitFor(t, done, "FetchCatalog to give up"); err == nil {
		t.Fatal("FetchCatalog succeeded against a silent server")
	}
}
