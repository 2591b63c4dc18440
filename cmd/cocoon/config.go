package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/cocoon-mesh/cocoon/node/config"
)

// runConfig handles `cocoon config init`: a documented configuration file
// for a role, every setting at its default.
func runConfig(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "init" {
		return usageError{"usage: cocoon config init --role worker|proxy|client [--out FILE]"}
	}
	fset := flag.NewFlagSet("config init", flag.ContinueOnError)
	fset.SetOutput(stderr)
	roleName := fset.String("role", "", "worker, proxy or client")
	out := fset.String("out", "", "write the file here (0600; never over an existing file) instead of to stdout")
	if err := fset.Parse(args[1:]); err != nil {
		return err
	}
	if fset.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fset.Arg(0))}
	}
	role, err := config.ParseRole(*roleName)
	if err != nil {
		return usageError{fmt.Sprintf("--role: %v", err)}
	}
	text, err := config.Example(role)
	if err != nil {
		return err
	}
	if *out == "" {
		_, err := io.WriteString(stdout, text)
		return err
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s exists; not overwriting it", *out)
	}
	if err != nil {
		return err
	}
	if _, err := io.WriteString(f, text); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s; start the node with: cocoon %s --config %s\n", *out, role, *out)
	return nil
}
