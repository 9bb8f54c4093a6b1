package main

import (
	"slices"
	"testing"

	"github.com/coredns/coredns/core/dnsserver"
)

// SPEC: D4
func TestPGPlaneRunsBeforeCache(t *testing.T) {
	d := directives(dnsserver.Directives)
	p, c := slices.Index(d, "pgplane"), slices.Index(d, "cache")
	if p < 0 || c < 0 || p+1 != c {
		t.Fatalf("pgplane must come right before cache, got pgplane at %d, cache at %d", p, c)
	}
	if len(d) != len(dnsserver.Directives)+1 {
		t.Fatalf("the stock list must be kept whole")
	}
}
