package main

import (
	"errors"
	"strings"
	"testing"
)

// TestSourceConfig: every format's source config is accepted, and every
// mistake is a config error that names the field and the offending value
// or variable.
func TestSourceConfig(t *testing.T) {
	const head = "database: x.db\nfingerprint_secret_file: x.key\nsources:\n"
	tests := []struct {
		name, source string
		want         string // substring of the error; "" for a good config
	}{
		{"nginx custom", `  - {name: a, format: nginx, log_format: '$remote_addr [$time_local] "$request" $status key=$api_key_prefix', credential: {field: api_key_prefix}, identity: {path: ["/c/{identity}/"]}}`, ""},
		{"nginx pasted directive", "  - name: a\n    format: nginx\n    log_format: |\n      log_format spray escape=json '{\"ip\":\"$remote_addr\",'\n                     '\"t\":\"$time_iso8601\",\"r\":\"$request\",\"s\":$status}';\n    identity: {remote_user: true}", ""},
		{"nginx escape=json with arg identity", "  - name: a\n    format: nginx\n    log_format: |\n      log_format j escape=json '{\"ip\":\"$remote_addr\",'\n        '\"t\":\"$time_iso8601\",\"r\":\"$request\",\"s\":$status,\"c\":\"$arg_client\"}';\n    identity: {field: arg_client}", ""},
		{"gunicorn default", `  - {name: g, format: gunicorn, identity: {path: ["/c/{identity}/"]}}`, ""},
		{"gunicorn raw key", `  - {name: g, format: gunicorn, log_format: '%(h)s %(t)s "%(r)s" %(s)s key="%({x-api-key}i)s"', credential: {field: "%({X-Api-Key}i)s", kind: key}, identity: {path: ["/c/{identity}/"]}}`, ""},
		{"flask default", `  - {name: f, format: flask, identity: {path: ["/c/{identity}/"]}}`, ""},
		{"flask regex and format", `  - {name: f, format: flask, app_regex: '^(?P<time>\S+ \S+) .*client=(?P<identity>\S+) ip=(?P<ip>\S+) status=(?P<status>\d+)', app_log_format: '%(asctime)s %(levelname)s %(message)s', join_window: 3s}`, ""},
		{"json", `  - {name: j, format: json, credential: {field: key_prefix}}`, ""},
		{"combined", `  - {name: c, format: combined, identity: {path: ["/c/{identity}/"]}}`, ""},

		{"unknown format", `  - {name: a, format: apache, identity: {remote_user: true}}`, `format: "apache": must be one of nginx, json, gunicorn, flask, combined`},
		{"no format", `  - {name: a, identity: {remote_user: true}}`, `format: "": must be set`},
		{"nginx adjacent variables", `  - {name: a, format: nginx, log_format: '$remote_addr $host$request_uri $status', identity: {remote_user: true}}`, "$request_uri directly follows $host"},
		{"nginx bad variable", `  - {name: a, format: nginx, log_format: '$remote_addr ${x-y} $status', identity: {remote_user: true}}`, `log_format: "$remote_addr ${x-y} $status": log_format: bad variable at "${x-y}`},
		{"nginx field not in layout", `  - {name: a, format: nginx, credential: {field: http_x_api_key}, identity: {remote_user: true}}`, `credential field "http_x_api_key" is not in the layout`},
		{"gunicorn unknown atom", `  - {name: g, format: gunicorn, log_format: '%(h)s %(t)s %(z)s %(s)s', identity: {remote_user: true}}`, "%(z)s: unknown atom"},
		{"gunicorn upper-case header", `  - {name: g, format: gunicorn, log_format: '%(h)s %(t)s %(s)s %({X-Api-Key}i)s', identity: {remote_user: true}}`, "{x-api-key}i"},
		{"log_format on json", `  - {name: j, format: json, log_format: '$status'}`, `log_format: "$status": only applies to formats nginx and gunicorn`},
		{"log_format on combined", `  - {name: c, format: combined, log_format: '$status', identity: {remote_user: true}}`, "format combined is fixed"},
		{"credential on combined", `  - {name: c, format: combined, credential: {field: x}, identity: {remote_user: true}}`, `credential.field: "x": the combined format carries no credential`},
		{"bad app regex", `  - {name: f, format: flask, app_regex: '(?P<identity>'}`, `app_regex: "(?P<identity>"`},
		{"app regex without time", `  - {name: f, format: flask, app_regex: 'ip=(?P<ip>\S+) status=(?P<status>\d+)'}`, "app_regex has no time field (it has ip, status; tried"},
		{"nginx without status", `  - {name: a, format: nginx, log_format: '$remote_addr [$time_local] "$request"', identity: {remote_user: true}}`, "log_format has no status (or outcome) field"},
		{"app regex without groups", `  - {name: f, format: flask, app_regex: 'status=\d+'}`, "no named groups"},
		{"bad app log format", `  - {name: f, format: flask, app_log_format: '%(asctime)s%(message)s'}`, "%(message)s directly follows %(asctime)s"},
		{"app_regex on nginx", `  - {name: a, format: nginx, app_regex: 'x', identity: {remote_user: true}}`, `app_regex: "x": only applies to format flask`},
		{"join window too long", `  - {name: f, format: flask, join_window: 5m}`, `join_window: "5m0s": must be between 0s and 1m`},
		{"prefix on nginx header", `  - {name: a, format: nginx, log_format: '$remote_addr [$time_local] "$request" $status key=$http_x_api_key', credential: {field: http_x_api_key, kind: prefix}, identity: {path: ["/c/{identity}/"]}}`, `credential.kind: "prefix": credential.field "http_x_api_key" logs a request header`},
		{"prefix on gunicorn header", `  - {name: g, format: gunicorn, log_format: '%(h)s %(t)s "%(r)s" %(s)s key="%({x-api-key}i)s"', credential: {field: "%({X-Api-Key}i)s", kind: prefix}, identity: {path: ["/c/{identity}/"]}}`, `credential.kind: "prefix": credential.field "%({X-Api-Key}i)s" logs a request header`},
		{"prefix on json header path", `  - {name: j, format: json, credential: {field: headers.x-api-key, kind: prefix}}`, `credential.kind: "prefix": credential.field "headers.x-api-key" logs a request header`},
		{"prefix on header via fields", `  - {name: a, format: nginx, log_format: '$remote_addr [$time_local] "$request" $status key=$http_x_api_key', fields: {credential: $http_x_api_key}, credential: {kind: prefix}, identity: {path: ["/c/{identity}/"]}}`, `credential.kind: "prefix": fields.credential "$http_x_api_key" logs a request header`},
		{"unknown role", `  - {name: a, format: nginx, fields: {client: x}, identity: {remote_user: true}}`, "fields.client: \"x\": unknown role (ip, time, request, method, path, query, status, latency, user, identity, credential, outcome)"},
		{"unknown key", `  - {name: a, format: nginx, access_log_format: x}`, "access_log_format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(head+tt.source+"\n"), "")
			if tt.want == "" {
				if err != nil {
					t.Fatalf("ParseConfig: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseConfig accepted it, want an error containing %q", tt.want)
			}
			if !errors.Is(err, errConfig) {
				t.Errorf("error is not a config error: %v", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error\n  %v\ndoes not contain\n  %s", err, tt.want)
			}
		})
	}
}
