package ingest_test

import (
	"errors"
	"testing"

	"github.com/spraywatch/spraywatch/ingest"
)

// Requests on the API's routes count even when the line names no identity;
// routes: replaces the default.
func TestIdentityNotInLogRoutes(t *testing.T) {
	line := func(path string) []byte {
		return []byte(`203.0.113.5 - - [28/Nov/2026:10:00:00 +0000] "POST ` + path + ` HTTP/1.1" 401 12 "-" "curl/8"`)
	}
	tests := []struct {
		name      string
		templates []string
		routes    []string
		path      string
		route     string // "" when filtered
		identity  string
	}{
		{"template route names the identity", []string{"/api/v1/clients/{identity}/"}, nil, "/api/v1/clients/c-1/keys", "/api/v1/clients/{identity}/", "c-1"},
		{"token endpoint of the same API counts without identity", []string{"/api/v1/clients/{identity}/"}, nil, "/api/v1/token", "/api/v1/", ""},
		{"the collection itself counts without identity", []string{"/api/v1/clients/{identity}/"}, nil, "/api/v1/clients/", "/api/v1/", ""},
		{"outside the API is filtered", []string{"/api/v1/clients/{identity}/"}, nil, "/static/app.js", "", ""},
		{"one fixed segment: the API is that segment", []string{"/clients/{identity}"}, nil, "/clients/", "/clients/", ""},
		{"one fixed segment: other paths are filtered", []string{"/clients/{identity}"}, nil, "/oauth/token", "", ""},
		{"routes replace the default", []string{"/api/v1/clients/{identity}/"}, []string{"/oauth/"}, "/oauth/token", "/oauth/", ""},
		{"routes replace the default: the API root is no longer counted", []string{"/api/v1/clients/{identity}/"}, []string{"/oauth/"}, "/api/v1/token", "", ""},
		{"routes keep the templates", []string{"/api/v1/clients/{identity}/"}, []string{"/oauth/"}, "/api/v1/clients/c-2/x", "/api/v1/clients/{identity}/", "c-2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ingest.NewParser(ingest.Options{Name: "api", Format: ingest.FormatNginx, IdentityPaths: tc.templates, Routes: tc.routes,
				Statuses: ingest.DefaultStatuses()})
			if err != nil {
				t.Fatal(err)
			}
			var ev ingest.Event
			err = p.Parse(line(tc.path), &ev)
			if tc.route == "" {
				if !errors.Is(err, ingest.ErrNotAuthRoute) {
					t.Fatalf("%s: got %v (route %q), want ErrNotAuthRoute", tc.path, err, ev.Route)
				}
				return
			}
			if err != nil {
				t.Fatalf("%s: %v", tc.path, err)
			}
			if ev.Route != tc.route || ev.Identity != tc.identity || ev.Outcome != ingest.Failure {
				t.Errorf("%s: route %q identity %q outcome %v; want %q %q failure", tc.path, ev.Route, ev.Identity, ev.Outcome, tc.route, tc.identity)
			}
		})
	}
}
