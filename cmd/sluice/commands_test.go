package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestHelpForEveryCommand(t *testing.T) {
	code, out, _ := runCLI("--help")
	assert.Equal(t, 0, code)
	for _, c := range commands() {
		assert.Contains(t, out, c.name)
		code, out, _ := runCLI(c.name, "--help")
		assert.Equal(t, 0, code, c.name)
		assert.Contains(t, out, "Usage: sluice "+c.name, c.name)
	}
}

func TestUsageErrors(t *testing.T) {
	cases := map[string][]string{
		"unknown command":         {"frobnicate"},
		"unknown flag":            {"serve", "--no-such-flag"},
		"both sources":            {"serve", "--config-dir", "x", "--kubeconfig", "y"},
		"bad log level":           {"serve", "--log-level", "loud"},
		"hold-off over max-delay": {"serve", "--hold-off", "1s", "--max-delay", "10ms"},
		"bootstrap kind":          {"bootstrap", "--kind", "nginx", "--name", "p", "--xds-address", "a:1"},
		"bootstrap no address":    {"bootstrap", "--name", "p"},
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			code, _, stderr := runCLI(args...)
			assert.Equal(t, 2, code)
			assert.NotEmpty(t, strings.TrimSpace(stderr))
		})
	}
}

func TestBootstrapAndVersion(t *testing.T) {
	code, out, _ := runCLI("bootstrap", "--kind", "grpc", "--name", "p", "--namespace", "ns", "--xds-address", "127.0.0.1:15010")
	assert.Equal(t, 0, code)
	assert.Contains(t, out, `"server_uri": "127.0.0.1:15010"`)
	code, out, _ = runCLI("bootstrap", "--kind", "envoy", "--name", "p", "--xds-address", "127.0.0.1:15010")
	assert.Equal(t, 0, code)
	assert.Contains(t, out, "ads_config")
	code, out, _ = runCLI("version")
	assert.Equal(t, 0, code)
	assert.Contains(t, out, "sluice ")
}
