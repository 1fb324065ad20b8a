package ingest_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/spraywatch/spraywatch/ingest"
)

const credLine = `127.0.3.7 [28/Nov/2026:16:03:41 +0000] "GET /api/v1/clients/c1/resource HTTP/1.1" 401 key=`

// TestPrefixKindLongValueIsFingerprinted: a value longer than any logged
// prefix is a whole key whatever the kind says, so it is fingerprinted and
// flagged raw, never stored as its own label.
func TestPrefixKindLongValueIsFingerprinted(t *testing.T) {
	const key = "sk_live_4f9aQ2ZxT7mBv81LpWc3"
	for _, kind := range []ingest.CredentialKind{ingest.CredentialPrefix, ingest.CredentialAuto, ingest.CredentialKey} {
		p := goldenParser(t, ingest.Options{Format: ingest.FormatNginx, Layout: `$remote_addr [$time_local] "$request" $status key=$api_key_prefix`,
			Fields: map[ingest.Role]string{ingest.RoleCredential: "api_key_prefix"}, CredentialKind: kind, IdentityPaths: []string{identityPath}})
		var ev ingest.Event
		if err := p.Parse([]byte(credLine+key), &ev); err != nil {
			t.Fatalf("kind %d: %v", kind, err)
		}
		if !ev.RawCredential || strings.Contains(ev.Credential, key[6:]) {
			t.Errorf("kind %d: credential %q (raw %v), want a fingerprint label flagged raw", kind, ev.Credential, ev.RawCredential)
		}
	}
	// A real prefix stays the label.
	p := goldenParser(t, ingest.Options{Format: ingest.FormatNginx, Layout: `$remote_addr [$time_local] "$request" $status key=$api_key_prefix`,
		Fields: map[ingest.Role]string{ingest.RoleCredential: "api_key_prefix"}, CredentialKind: ingest.CredentialPrefix, IdentityPaths: []string{identityPath}})
	var ev ingest.Event
	if err := p.Parse([]byte(credLine+"sk_live_4f9a"), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.RawCredential || ev.Credential != "sk_live_4f9a" {
		t.Errorf("prefix: credential %q (raw %v), want the prefix itself", ev.Credential, ev.RawCredential)
	}
}

// TestPrefixKindOnHeaderRejected: a logged request header holds the whole
// key as sent, so calling it a prefix is a configuration error.
func TestPrefixKindOnHeaderRejected(t *testing.T) {
	tests := []struct {
		name string
		opts ingest.Options
	}{
		{"nginx", ingest.Options{Format: ingest.FormatNginx, Layout: `$remote_addr [$time_local] "$request" $status key=$http_x_api_key`,
			Fields: map[ingest.Role]string{ingest.RoleCredential: "http_x_api_key"}}},
		{"gunicorn", ingest.Options{Format: ingest.FormatGunicorn, Layout: `%(h)s %(t)s "%(r)s" %(s)s key=%({x-api-key}i)s`,
			Fields: map[ingest.Role]string{ingest.RoleCredential: "%({X-Api-Key}i)s"}}},
		{"json", ingest.Options{Format: ingest.FormatJSON, Fields: map[ingest.Role]string{ingest.RoleCredential: "headers.x-api-key"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.opts
			o.CredentialKind, o.IdentityPaths, o.Secret = ingest.CredentialPrefix, []string{identityPath}, []byte("s")
			if _, err := ingest.NewParser(o); !errors.Is(err, ingest.ErrPrefixHeader) {
				t.Errorf("NewParser = %v, want ErrPrefixHeader", err)
			}
			if !ingest.IsHeaderField(o.Format, o.Fields[ingest.RoleCredential]) {
				t.Errorf("IsHeaderField(%q, %q) = false", o.Format, o.Fields[ingest.RoleCredential])
			}
		})
	}
}

// TestAutoKeyNamedFieldIsWholeKey: under kind auto, a credential field
// named like a key, token, auth, secret or password holds whole keys, so
// even a short value is fingerprinted; a field named as a prefix keeps its
// values as labels.
func TestAutoKeyNamedFieldIsWholeKey(t *testing.T) {
	tests := []struct {
		field string
		whole bool
	}{
		{"api_key", true},
		{"apiKey", true},
		{"access_token", true},
		{"Authorization", true},
		{"client_secret", true},
		{"password", true},
		{"api_key_prefix", false},
		{"key_prefix", false},
		{"credential", false},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			p := goldenParser(t, ingest.Options{Format: ingest.FormatJSON, Fields: map[ingest.Role]string{ingest.RoleCredential: tt.field}})
			line := `{"time":"2026-11-28T16:03:41Z","ip":"127.0.3.7","client_id":"c1","status":401,"` + tt.field + `":"abc123short"}`
			var ev ingest.Event
			if err := p.Parse([]byte(line), &ev); err != nil {
				t.Fatal(err)
			}
			if tt.whole && (!ev.RawCredential || strings.Contains(ev.Credential, "abc123short")) {
				t.Errorf("credential %q (raw %v), want a fingerprint label flagged raw", ev.Credential, ev.RawCredential)
			}
			if !tt.whole && (ev.RawCredential || ev.Credential != "abc123short") {
				t.Errorf("credential %q (raw %v), want the prefix as label", ev.Credential, ev.RawCredential)
			}
		})
	}
	// nginx: $api_key is a whole key however short.
	p := goldenParser(t, ingest.Options{Format: ingest.FormatNginx, Layout: `$remote_addr [$time_local] "$request" $status key=$api_key`,
		Fields: map[ingest.Role]string{ingest.RoleCredential: "$api_key"}, IdentityPaths: []string{identityPath}})
	var ev ingest.Event
	if err := p.Parse([]byte(credLine+"abc123short"), &ev); err != nil {
		t.Fatal(err)
	}
	if !ev.RawCredential || strings.Contains(ev.Credential, "abc123short") {
		t.Errorf("nginx $api_key: credential %q (raw %v), want a fingerprint label flagged raw", ev.Credential, ev.RawCredential)
	}
}
