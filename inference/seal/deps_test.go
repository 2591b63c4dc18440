package seal_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestStandardLibraryOnly: the package is self-contained, its crypto the
// standard library's.
func TestStandardLibraryOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if p != "github.com/cocoon-mesh/cocoon/inference/seal" {
			t.Errorf("inference/seal depends on %s", p)
		}
	}
}
