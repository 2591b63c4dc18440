package liteclient

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	tonlc "github.com/xssnick/tonutils-go/liteclient"
)

// Global configs of the public TON networks, as published by the TON
// Foundation.
const (
	MainnetConfigURL = "https://ton.org/global.config.json"
	TestnetConfigURL = "https://ton.org/testnet-global.config.json"
)

// Networks that Config.Network names.
const (
	Mainnet = "mainnet"
	Testnet = "testnet"
)

// maxGlobalConfig caps a global config read from a file or a URL. Public
// configs are a few tens of KiB.
const maxGlobalConfig = 4 << 20

// fetchTimeout bounds fetching a global config from a URL when ctx allows
// longer.
const fetchTimeout = 30 * time.Second

// Config configures a Client.
type Config struct {
	// GlobalConfig is a file path or an http(s) URL of a TON global config
	// JSON: the liteservers to connect to and the block to trust. When empty,
	// the public config of Network is used (MainnetConfigURL or
	// TestnetConfigURL).
	GlobalConfig string
	// Network is Mainnet or Testnet. It picks the default GlobalConfig and
	// labels logs. Required.
	Network string
}

// Validate reports the first field that is wrong, by name.
func (c Config) Validate() error {
	switch c.Network {
	case Mainnet, Testnet:
	case "":
		return errors.New("liteclient: Network is required (mainnet or testnet)")
	default:
		return fmt.Errorf("liteclient: Network %q: want mainnet or testnet", c.Network)
	}
	return nil
}

// source returns where the global config comes from: GlobalConfig, or the
// network's public config.
func (c Config) source() string {
	if c.GlobalConfig != "" {
		return c.GlobalConfig
	}
	if c.Network == Testnet {
		return TestnetConfigURL
	}
	return MainnetConfigURL
}

// LoadGlobalConfig reads a TON global config from source, a file path or an
// http(s) URL, and checks what the client needs from it: at least one
// liteserver with a port and a 32-byte key, and the validator's init block,
// from which masterchain proofs are checked. It reads at most 4 MiB. Errors
// name the source.
func LoadGlobalConfig(ctx context.Context, source string) (*tonlc.GlobalConfig, error) {
	var (
		data []byte
		err  error
	)
	if isURL(source) {
		data, err = fetch(ctx, source)
	} else {
		data, err = readFile(source)
	}
	if err == nil {
		var gc *tonlc.GlobalConfig
		if gc, err = decodeGlobalConfig(data); err == nil {
			return gc, nil
		}
	}
	return nil, fmt.Errorf("global config %s: %w", redact(source), err)
}

func isURL(source string) bool {
	return strings.HasPrefix(source, "http://") || strings.HasPrefix(source, "https://")
}

// redact hides a password in a URL source; a file path comes back as is.
func redact(source string) string {
	if !isURL(source) {
		return source
	}
	u, err := url.Parse(source)
	if err != nil {
		return source
	}
	return u.Redacted()
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readCapped(f)
}

func fetch(ctx context.Context, rawURL string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %s", resp.Status)
	}
	if resp.ContentLength > maxGlobalConfig {
		return nil, fmt.Errorf("%d bytes, more than the %d allowed", resp.ContentLength, maxGlobalConfig)
	}
	return readCapped(resp.Body)
}

func readCapped(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxGlobalConfig+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxGlobalConfig {
		return nil, fmt.Errorf("more than the %d bytes allowed", maxGlobalConfig)
	}
	return data, nil
}

// decodeGlobalConfig parses and checks a global config. Its input is
// untrusted.
func decodeGlobalConfig(data []byte) (*tonlc.GlobalConfig, error) {
	var gc tonlc.GlobalConfig
	if err := json.Unmarshal(data, &gc); err != nil {
		return nil, fmt.Errorf("decoding JSON: %w", err)
	}
	if len(gc.Liteservers) == 0 {
		return nil, errors.New("no liteservers")
	}
	for i, ls := range gc.Liteservers {
		if ls.Port < 1 || ls.Port > 65535 {
			return nil, fmt.Errorf("liteservers[%d]: port %d out of range", i, ls.Port)
		}
		if ls.IP < -1<<31 || ls.IP > 1<<32-1 {
			return nil, fmt.Errorf("liteservers[%d]: ip %d is not an IPv4 address", i, ls.IP)
		}
		key, err := base64.StdEncoding.DecodeString(ls.ID.Key)
		if err != nil || len(key) != 32 {
			return nil, fmt.Errorf("liteservers[%d]: id.key must be 32 bytes in base64", i)
		}
	}
	ib := gc.Validator.InitBlock
	if len(ib.RootHash) != 32 || len(ib.FileHash) != 32 {
		return nil, errors.New("validator.init_block: root_hash and file_hash must be 32 bytes")
	}
	return &gc, nil
}
