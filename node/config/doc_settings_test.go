package config_test

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/cocoon-mesh/cocoon/node/config"
)

// The example file of each role loads back into exactly the defaults.
func TestExampleConfigIsTheDefaults(t *testing.T) {
	for _, role := range []config.Role{config.RoleWorker, config.RoleProxy, config.RoleClient} {
		t.Run(role.String(), func(t *testing.T) {
			text, err := config.Example(role)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "cocoon.toml")
			if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			got := config.Default(role)
			got.Gossip.AnnounceInterval = 0 // the file must set it back
			if err := got.LoadFile(path); err != nil {
				t.Fatal(err)
			}
			want := config.Default(role)
			if a, b := encode(t, got), encode(t, want); a != b {
				t.Fatalf("the example loads as\n%s\nwant the defaults\n%s", a, b)
			}
			for other, section := range map[config.Role]string{config.RoleWorker: "[worker]", config.RoleProxy: "[proxy]", config.RoleClient: "[client]"} {
				if has := strings.Contains(text, section); has != (other == role) {
					t.Errorf("%s example: section %s present %t", role, section, has)
				}
			}
		})
	}
}

// encode writes c as TOML with empty lists dropped, for comparison.
func encode(t *testing.T, c config.Config) string {
	t.Helper()
	for _, l := range []*[]string{&c.Worker.Proxies, &c.Worker.OpenAI.Models, &c.Worker.OpenAI.EmbeddingModels, &c.Proxy.Workers, &c.Client.Proxies, &c.Client.AllowedHosts, &c.Client.AllowedOrigins, &c.Discovery.Bootstrap} {
		if len(*l) == 0 {
			*l = nil
		}
	}
	var b strings.Builder
	if err := toml.NewEncoder(&b).Encode(c); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// Every setting is documented, and every documented setting exists.
func TestEverySettingDocumented(t *testing.T) {
	var keys []string
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for f := range typ.Fields() {
			tag := f.Tag.Get("toml")
			if tag == "" || tag == "-" {
				continue
			}
			key := prefix + tag
			if f.Type.Kind() == reflect.Struct {
				walk(key+".", f.Type)
				continue
			}
			keys = append(keys, key)
		}
	}
	walk("", reflect.TypeFor[config.Config]())
	docs := config.SettingDocs()
	for _, k := range keys {
		if docs[k] == "" {
			t.Errorf("setting %s has no documentation", k)
		}
	}
	for k := range docs {
		if !slices.Contains(keys, k) {
			t.Errorf("documentation for %s, which is not a setting", k)
		}
	}
}

// docs/config holds each role's example, as `cocoon config init` writes it.
func TestDocsConfigUpToDate(t *testing.T) {
	for _, role := range []config.Role{config.RoleWorker, config.RoleProxy, config.RoleClient} {
		want, err := config.Example(role)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("..", "..", "docs", "config", role.String()+".toml")
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Errorf("%s is stale; regenerate it: go run ./cmd/cocoon config init --role %s > %s", path, role, path)
		}
	}
}
