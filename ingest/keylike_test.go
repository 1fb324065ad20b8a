package ingest_test

import (
	"strings"
	"testing"

	"github.com/spraywatch/spraywatch/ingest"
)

// TestKeyAsIdentityIsFingerprinted: a client that sends its key where its
// ID goes (/clients/sk_live_…/) must not leave the key as an identity to be
// stored and alerted on. Such identities become fingerprint labels, distinct
// per key and flagged raw; the IDs apps put in paths stay as they are.
func TestKeyAsIdentityIsFingerprinted(t *testing.T) {
	p := goldenParser(t, ingest.Options{Format: ingest.FormatNginx, Layout: `$remote_addr [$time_local] "$request" $status key=$api_key_prefix`,
		Fields: map[ingest.Role]string{ingest.RoleCredential: "api_key_prefix"}, CredentialKind: ingest.CredentialPrefix, IdentityPaths: []string{identityPath}})
	line := func(id string) []byte {
		return []byte(`127.0.3.7 [28/Nov/2026:16:03:41 +0000] "GET /api/v1/clients/` + id + `/resource HTTP/1.1" 401 key=sk_live_4f9a`)
	}
	keys := []string{
		"sk_live_4f9aQ2ZxT7mBv81LpWc3",
		"sk_test_00000000000000000000",
		"ghp_abcdefghijklmnopqrstuvwxyz0123456789",
		"xoxb-123456789012-abcdefABCDEF",
		"AKIAIOSFODNN7EXAMPLE",
		"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
		"Zx81LpWc3Tq9mBv4f9aQ2Zx7", // random base62
	}
	seen := map[string]bool{}
	for _, k := range keys {
		var ev ingest.Event
		if err := p.Parse(line(k), &ev); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		if strings.Contains(ev.Identity, k[6:]) || !strings.Contains(ev.Identity, "…") || !ev.RawCredential {
			t.Errorf("identity %q from key %s (raw %v): want its fingerprint label, flagged raw", ev.Identity, k, ev.RawCredential)
		}
		if seen[ev.Identity] {
			t.Errorf("two keys share the label %q", ev.Identity)
		}
		seen[ev.Identity] = true
	}
	ids := []string{
		"client-0042",
		"12345678901234567890123",
		"3f2a9c1e-77b4-4c1d-9e2a-5b6c7d8e9f01", // UUID
		"5f1a2b3c4d5e6f7a8b9c0d1e",             // hex object ID
		"alice@example.com",
		"acme-corporation-production-eu-west",
		"cus_NffrFeUfNV2Hib", // short
		"sk_live_short",
	}
	for _, id := range ids {
		var ev ingest.Event
		if err := p.Parse(line(id), &ev); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if ev.Identity != id || ev.RawCredential {
			t.Errorf("identity %q from %s (raw %v): want it as it is", ev.Identity, id, ev.RawCredential)
		}
	}
	// The flag belongs to the line: the next line's identity is judged anew.
	var ev ingest.Event
	p.Parse(line(keys[0]), &ev)
	if err := p.Parse([]byte(`127.0.3.7 [28/Nov/2026:16:03:41 +0000] "GET /other HTTP/1.1" 401 key=sk_live_4f9a`), &ev); err == nil && ev.RawCredential {
		t.Errorf("a line without an identity after a key-like one is flagged raw")
	}
}
