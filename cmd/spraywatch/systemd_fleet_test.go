package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The fleet's units pass systemd-analyze verify too, and say what each role
// needs: the agent reads the logs, the judge none; both take the database
// password and the shared fingerprint secret as credentials.
func TestFleetUnitsVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("systemd-analyze is missing (Debian: apt-get install systemd)")
		}
		t.Skip("systemd-analyze is missing (Debian: apt-get install systemd)")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for unit, want := range map[string][]string{
		"spraywatch-agent.service": {"run --role agent", "SupplementaryGroups=adm", "ReadOnlyPaths=/var/log", "LoadCredential=pg-password:", "LoadCredential=fingerprint.key:"},
		"spraywatch-judge.service": {"run --role judge", "InaccessiblePaths=-/var/log", "LoadCredential=pg-password:", "LoadCredential=fingerprint.key:"},
	} {
		t.Run(unit, func(t *testing.T) {
			text, err := os.ReadFile(unit)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range append(want, "Type=notify", "WatchdogSec=", "DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes") {
				if !strings.Contains(string(text), w) {
					t.Errorf("unit lacks %q", w)
				}
			}
			path := filepath.Join(t.TempDir(), unit)
			if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(text), "/usr/local/bin/spraywatch", self)), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(analyze, "verify", path).CombinedOutput()
			if err != nil || strings.Contains(string(out), unit) {
				t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
			}
		})
	}
}
