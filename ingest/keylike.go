package ingest

import "bytes"

// keyPrefixes start well-known secret API keys and tokens.
var keyPrefixes = []string{
	"sk_live_", "sk_test_", "rk_live_", "rk_test_", "sk-", "ghp_", "gho_", "ghu_", "ghs_", "ghr_",
	"github_pat_", "glpat-", "xoxb-", "xoxp-", "xoxa-", "xoxr-", "xapp-", "AKIA", "ASIA", "AIza",
}

// keyLike reports whether an identity looks like a whole API key rather
// than a client ID: a client that sent its key where its ID goes puts the
// key in the log's path, and it must not become an identity that is stored
// and shown. It is a key when it starts with a well-known key prefix and
// goes on for 12 bytes or more, when it is a JWT, or when it is 20 bytes or
// more of letters, digits, '_' and '-' with upper case, lower case and
// digits all present, as random base62 keys have and the IDs apps put in
// paths (numbers, slugs, UUIDs, hex object IDs, e-mail addresses) have not.
// Random mixed-case IDs of that length (some identity providers' user IDs)
// are taken for keys too: they are then shown by their fingerprint label,
// which keeps them apart, rather than risk a key in an alert.
func keyLike(id []byte) bool {
	for _, p := range keyPrefixes {
		if len(id) >= len(p)+12 && string(id[:len(p)]) == p {
			return true
		}
	}
	if bytes.HasPrefix(id, []byte("eyJ")) && bytes.Count(id, []byte(".")) == 2 && len(id) >= 20 {
		return true
	}
	if len(id) < 20 {
		return false
	}
	var upper, lower, digit bool
	for _, c := range id {
		switch {
		case c >= 'A' && c <= 'Z':
			upper = true
		case c >= 'a' && c <= 'z':
			lower = true
		case c >= '0' && c <= '9':
			digit = true
		case c == '_' || c == '-':
		default:
			return false
		}
	}
	return upper && lower && digit
}
