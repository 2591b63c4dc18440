package liteclient

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

//go:embed testdata/global.config.json
var globalConfigJSON []byte

func writeFile(t *testing.T, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "global.config.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// edit returns the testdata config changed by f.
func edit(t *testing.T, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(globalConfigJSON))
	dec.UseNumber() // shards are 64-bit
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	f(m)
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func firstLiteserver(m map[string]any) map[string]any {
	return m["liteservers"].([]any)[0].(map[string]any)
}

func TestLoadGlobalConfigFile(t *testing.T) {
	tests := []struct {
		name    string
		data    []byte
		wantErr string // "" for success
	}{
		{name: "testdata", data: globalConfigJSON},
		{name: "bad JSON", data: []byte(`{"liteservers": [`), wantErr: "decoding JSON"},
		{name: "not an object", data: []byte(`[1, 2]`), wantErr: "decoding JSON"},
		{name: "null", data: []byte(`null`), wantErr: "no liteservers"},
		{name: "too big", data: bytes.Repeat([]byte(" "), maxGlobalConfig+1), wantErr: "more than the 4194304 bytes allowed"},
		{
			name:    "no liteservers",
			data:    edit(t, func(m map[string]any) { m["liteservers"] = []any{} }),
			wantErr: "no liteservers",
		},
		{
			name:    "short key",
			data:    edit(t, func(m map[string]any) { firstLiteserver(m)["id"] = map[string]any{"key": "AAAA"} }),
			wantErr: "liteservers[0]: id.key must be 32 bytes",
		},
		{
			name:    "key not base64",
			data:    edit(t, func(m map[string]any) { firstLiteserver(m)["id"] = map[string]any{"key": "!!"} }),
			wantErr: "liteservers[0]: id.key must be 32 bytes",
		},
		{
			name:    "port",
			data:    edit(t, func(m map[string]any) { firstLiteserver(m)["port"] = 70000 }),
			wantErr: "liteservers[0]: port 70000 out of range",
		},
		{
			name:    "ip",
			data:    edit(t, func(m map[string]any) { firstLiteserver(m)["ip"] = int64(1) << 33 }),
			wantErr: "is not an IPv4 address",
		},
		{
			name:    "no init block",
			data:    edit(t, func(m map[string]any) { delete(m["validator"].(map[string]any), "init_block") }),
			wantErr: "validator.init_block",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, tt.data)
			gc, err := LoadGlobalConfig(t.Context(), path)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if len(gc.Liteservers) != 2 || gc.Liteservers[1].Port != 40002 || gc.Validator.InitBlock.SeqNo != 1000 {
					t.Fatalf("config = %+v", gc)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q: want it to name %s and say %q", err, path, tt.wantErr)
			}
		})
	}
}

func TestLoadGlobalConfigMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nowhere.json")
	_, err := LoadGlobalConfig(t.Context(), path)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "global config "+path) {
		t.Fatalf("error %v: want fs.ErrNotExist naming %s", err, path)
	}
}

func TestLoadGlobalConfigURL(t *testing.T) {
	big := bytes.Repeat([]byte(" "), maxGlobalConfig+1)
	mux := http.NewServeMux()
	mux.HandleFunc("/global.config.json", func(w http.ResponseWriter, r *http.Request) {
		w.Write(globalConfigJSON)
	})
	mux.HandleFunc("/bad.json", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("<html>"))
	})
	mux.HandleFunc("/big-declared.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(big)))
		w.Write(big)
	})
	mux.HandleFunc("/big-chunked.json", func(w http.ResponseWriter, r *http.Request) {
		for chunk := range slices.Chunk(big, 64<<10) {
			w.Write(chunk)
			w.(http.Flusher).Flush()
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	tests := []struct {
		name    string
		url     string
		wantErr string // "" for success
	}{
		{name: "ok", url: srv.URL + "/global.config.json"},
		{name: "not found", url: srv.URL + "/missing.json", wantErr: "HTTP 404"},
		{name: "bad JSON", url: srv.URL + "/bad.json", wantErr: "decoding JSON"},
		{name: "too big, declared", url: srv.URL + "/big-declared.json", wantErr: "more than the 4194304 allowed"},
		{name: "too big, chunked", url: srv.URL + "/big-chunked.json", wantErr: "more than the 4194304 bytes allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gc, err := LoadGlobalConfig(t.Context(), tt.url)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if len(gc.Liteservers) != 2 {
					t.Fatalf("config = %+v", gc)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), tt.url) {
				t.Fatalf("error %q: want it to name %s and say %q", err, tt.url, tt.wantErr)
			}
		})
	}

	t.Run("password redacted", func(t *testing.T) {
		u := strings.Replace(srv.URL, "http://", "http://user:secret@", 1) + "/missing.json"
		_, err := LoadGlobalConfig(t.Context(), u)
		if err == nil || strings.Contains(err.Error(), "secret") {
			t.Fatalf("error %v: want one without the password", err)
		}
	})

	t.Run("ctx cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := LoadGlobalConfig(ctx, srv.URL+"/global.config.json")
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v: want context.Canceled", err)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		cfg        Config
		wantErr    string // "" for valid
		wantSource string
	}{
		{cfg: Config{Network: Mainnet}, wantSource: MainnetConfigURL},
		{cfg: Config{Network: Testnet}, wantSource: TestnetConfigURL},
		{cfg: Config{Network: Testnet, GlobalConfig: "/etc/ton.json"}, wantSource: "/etc/ton.json"},
		{cfg: Config{}, wantErr: "Network is required"},
		{cfg: Config{Network: "devnet"}, wantErr: `Network "devnet"`},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%+v: %v", tt.cfg, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%+v: error %v, want %q", tt.cfg, err, tt.wantErr)
		case tt.wantErr == "" && tt.cfg.source() != tt.wantSource:
			t.Errorf("%+v: source %q, want %q", tt.cfg, tt.cfg.source(), tt.wantSource)
		}
		if _, err := New(tt.cfg, nil); (err == nil) != (tt.wantErr == "") {
			t.Errorf("New(%+v): error %v", tt.cfg, err)
		}
	}
}

// FuzzDecodeGlobalConfig feeds the decoder arbitrary bytes: it must not
// panic, and what it accepts must hold what the client relies on.
func FuzzDecodeGlobalConfig(f *testing.F) {
	f.Add(globalConfigJSON)
	f.Add([]byte(`null`))
	f.Add([]byte(`{"liteservers":[{"ip":1,"port":1,"id":{"key":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}}]}`))
	f.Add(globalConfigJSON[:len(globalConfigJSON)/2])
	f.Fuzz(func(t *testing.T, data []byte) {
		gc, err := decodeGlobalConfig(data)
		if err != nil {
			return
		}
		if len(gc.Liteservers) == 0 {
			t.Fatal("accepted a config without liteservers")
		}
		for _, ls := range gc.Liteservers {
			if ls.Port < 1 || ls.Port > 65535 {
				t.Fatalf("accepted port %d", ls.Port)
			}
		}
		if len(gc.Validator.InitBlock.RootHash) != 32 || len(gc.Validator.InitBlock.FileHash) != 32 {
			t.Fatal("accepted an init block without hashes")
		}
		again, err := json.Marshal(gc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := decodeGlobalConfig(again); err != nil {
			t.Fatalf("accepted config does not survive encoding: %v", err)
		}
	})
}
