package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestAlertConfigNeverEchoesSecretRefs puts secrets where the config wants
// the name of a file or a variable that holds them. The error names the
// field and says what to do, and holds none of the secret.
func TestAlertConfigNeverEchoesSecretRefs(t *testing.T) {
	const (
		hookURL = "https://hooks.slack.com/services/T0AAAA/B0BBBB/urlsecret0123456789"
		token   = "xoxb-123456789012-1234567890123-tokensecretAbCdEf"
		looks   = "this looks like the secret itself; put it in a file or environment variable"
	)
	tests := []struct {
		name    string
		alert   string // the sink, under alerts:
		want    string
		secrets []string
	}{
		{"webhook URL as file", "{type: slack, webhook_url_file: '" + hookURL + "'}",
			"alerts[0].webhook_url_file: " + looks, []string{"urlsecret", "hooks.slack.com"}},
		{"webhook URL as variable", "{type: slack, webhook_url_env: '" + hookURL + "'}",
			"alerts[0].webhook_url_env: " + looks, []string{"urlsecret", "hooks.slack.com"}},
		{"token as variable", "{type: slack, token_env: " + token + ", channel: C1}",
			"alerts[0].token_env: " + looks, []string{"tokensecret", "xoxb-"}},
		{"token as file", "{type: slack, token_file: " + token + ", channel: C1}",
			"alerts[0].token_file: " + looks, []string{"tokensecret", "xoxb-"}},
		{"token as variable beside a file", "{type: slack, token_file: /etc/spraywatch/token, token_env: " + token + ", channel: C1}",
			"alerts[0].token_env: " + looks, []string{"tokensecret", "xoxb-"}},
		{"token beside a webhook", "{type: slack, webhook_url_file: /etc/spraywatch/hook, token_env: " + token + ", channel: C1}",
			"alerts[0].token_env: " + looks, []string{"tokensecret", "xoxb-"}},
		{"token on a stdout sink", "{type: stdout, token_env: " + token + "}",
			"alerts[0].token_env: " + looks, []string{"tokensecret", "xoxb-"}},
		{"URL without scheme as file", "{type: webhook, url_file: hooks.slack.com/services/T0/B0/pathsecret}",
			"alerts[0].url_file: " + looks, []string{"pathsecret", "hooks.slack.com"}},
		{"URL as variable", "{type: webhook, url_env: 'https://siem.example.com/in?key=querysecret'}",
			"alerts[0].url_env: " + looks, []string{"querysecret", "siem.example.com"}},
		{"hex key as variable", "{type: webhook, url_env: SIEM_URL, secret_env: 9f8e7d6c5b4a39281706f5e4d3c2b1a0}",
			"alerts[0].secret_env: " + looks, []string{"9f8e7d6c5b4a"}},
		{"key as file", "{type: webhook, url_env: SIEM_URL, secret_file: sk_live_4eC39HqLyjWDarjtT1zdp7dc}",
			"alerts[0].secret_file: " + looks, []string{"4eC39HqLyjWD"}},
		{"not a variable name", "{type: webhook, url_env: SIEM-URL}",
			"alerts[0].url_env: must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*)", []string{"SIEM-URL"}},
		{"variable name with a space", "{type: slack, token_env: 'SLACK TOKEN', channel: C1}",
			"alerts[0].token_env: must be an environment variable name", []string{"SLACK TOKEN"}},
		{"relative file", "{type: slack, token_file: slack-token, channel: C1}",
			"alerts[0].token_file: must be an absolute path", []string{"slack-token"}},
		{"file and variable", "{type: webhook, url_file: /etc/spraywatch/siem-url, url_env: SIEM_URL}",
			"alerts[0].url_file: set only one of url_file and url_env", []string{"/etc/spraywatch/siem-url"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := "database: /var/lib/spraywatch/db\nfingerprint_secret_file: /etc/spraywatch/key\nalerts:\n  - " + tt.alert + "\n"
			_, err := ParseConfig([]byte(cfg), "")
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, errConfig) {
				t.Errorf("not a config error: %v", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error\n  %v\ndoes not contain\n  %s", err, tt.want)
			}
			for _, s := range tt.secrets {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error echoes %q: %v", s, err)
				}
			}
		})
	}
}

// TestAlertConfigKeepsRealRefs: names and paths that only resemble a
// secret's shape are accepted.
func TestAlertConfigKeepsRealRefs(t *testing.T) {
	for _, alert := range []string{
		"{type: slack, token_env: SPRAYWATCH_SLACK_BOT_TOKEN_FOR_SECURITY_CHANNEL_2, channel: C1}",
		"{type: slack, token_file: /run/secrets/slack_token_0123456789abcdefABCDEF, channel: C1}",
		"{type: webhook, url_env: _SIEM_URL, secret_env: siem_hmac_key}",
	} {
		cfg := "database: /var/lib/spraywatch/db\nfingerprint_secret_file: /etc/spraywatch/key\nalerts:\n  - " + alert + "\n"
		if _, err := ParseConfig([]byte(cfg), ""); err != nil {
			t.Errorf("%s: %v", alert, err)
		}
	}
}

// TestCheckRejectsWhatRunRejects: 'spraywatch check' fails, as run would,
// when a sink's secret cannot be had, and says why without the secret.
func TestCheckRejectsWhatRunRejects(t *testing.T) {
	sample, _ := filepath.Abs("../../testdata/config/logs/app-utc.jsonl")
	jsonSource := fmt.Sprintf("{name: app, format: json, paths: [%s], credential: {field: key_prefix}, timezone: UTC}", sample)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "hook"), "https://hooks.slack.com/services/T0/B0/filesecret0815\n", 0o600)
	writeFile(t, filepath.Join(dir, "not-a-url"), "notaurlsecret0815\n", 0o600)
	writeFile(t, filepath.Join(dir, "empty"), "\n", 0o600)
	t.Setenv("SPRAYWATCH_TEST_CHECK_TOKEN", "xoxb-1-2-envsecret0815")
	t.Setenv("SPRAYWATCH_TEST_CHECK_UNSET", "")
	tests := []struct {
		name    string
		alert   string
		want    string // in stderr; "" for a pass
		secrets []string
	}{
		{"webhook at hand", fmt.Sprintf("{type: slack, webhook_url_file: %s/hook}", dir), "", nil},
		{"token at hand", "{type: slack, token_env: SPRAYWATCH_TEST_CHECK_TOKEN, channel: C1}", "", nil},
		{"token as variable", "{type: slack, token_env: xoxb-1-2-inlinesecret0815, channel: C1}",
			"alerts[0].token_env: this looks like the secret itself", []string{"inlinesecret"}},
		{"variable not set", "{type: slack, token_env: SPRAYWATCH_TEST_CHECK_UNSET, channel: C1}",
			"alerts[0].token_env: the variable is not set or empty", nil},
		{"file missing", fmt.Sprintf("{type: webhook, url_file: %s/absent}", dir),
			"alerts[0].url_file: cannot read the file", nil},
		{"file empty", fmt.Sprintf("{type: slack, token_file: %s/empty, channel: C1}", dir),
			"alerts[0].token_file: the file is empty", nil},
		{"file without a URL", fmt.Sprintf("{type: webhook, url_file: %s/not-a-url}", dir),
			"alerts[0].url_file: does not hold an http(s) URL", []string{"notaurlsecret"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := filepath.Join(dir, fmt.Sprintf("c%d.yml", i))
			writeFile(t, cfg, fmt.Sprintf("database: %[1]s/db\nfingerprint_secret_file: %[1]s/key\nsources: [%[3]s]\nalerts:\n  - %[2]s\n", dir, tt.alert, jsonSource), 0o644)
			code, stdout, stderr := runCLI(t, "check", "--config", cfg)
			if tt.want == "" {
				if code != exitOK {
					t.Fatalf("exit %d, want %d; stderr: %s", code, exitOK, stderr)
				}
				return
			}
			if code != exitUsage || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr, exitUsage, tt.want)
			}
			for _, s := range append(tt.secrets, "0815") {
				if strings.Contains(stdout+stderr, s) {
					t.Errorf("output echoes %q: %s%s", s, stdout, stderr)
				}
			}
		})
	}
}
