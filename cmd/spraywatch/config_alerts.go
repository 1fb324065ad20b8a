package main

import (
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// AlertConfig is one sink. Secrets (a webhook URL, a bot token, a signing
// secret) are never written in the config: it names a file or an
// environment variable that holds them.
type AlertConfig struct {
	// Type: stdout, file, slack or webhook.
	Type string `yaml:"type"`
	// Name identifies the destination in the outbox and in metrics; keep it
	// stable, or alerts pending under the old name are not sent. Default: the
	// type, then type-2, type-3 for more of one type.
	Name string `yaml:"name"`
	// Format: text (default for stdout) or json (JSON lines).
	Format string `yaml:"format"`
	// Path is the file of type file.
	Path string `yaml:"path"`

	// Slack incoming webhook: the URL is read from a file or a variable.
	WebhookURLFile string `yaml:"webhook_url_file"`
	WebhookURLEnv  string `yaml:"webhook_url_env"`
	// Slack bot: the token (xoxb-...) from a file or a variable, and the
	// channel to post in.
	TokenFile string `yaml:"token_file"`
	TokenEnv  string `yaml:"token_env"`
	Channel   string `yaml:"channel"`
	// Updates: how a bot shows that an incident grew: edit (default, edits
	// the first message) or thread (replies in its thread).
	Updates string `yaml:"updates"`

	// Generic webhook: the URL from a file or a variable, and an optional
	// HMAC-SHA256 signing secret from a file or a variable.
	URLFile    string `yaml:"url_file"`
	URLEnv     string `yaml:"url_env"`
	SecretFile string `yaml:"secret_file"`
	SecretEnv  string `yaml:"secret_env"`

	// Timeout bounds one request (slack, webhook). Default 10s.
	Timeout time.Duration `yaml:"timeout"`
	// Rate is the most messages per second. Default 1 for slack and webhook.
	Rate float64 `yaml:"rate"`
	// Cooldown is the least time between two messages about one incident.
	// Default 5m for slack and webhook, none for stdout and file.
	Cooldown time.Duration `yaml:"cooldown"`
	// StormThreshold: Slack gets at most this many new incidents of one
	// kind and source at once, then one summary. Default 5; -1: never.
	StormThreshold int `yaml:"storm_threshold"`

	// Inline secrets are refused with a message saying what to use.
	WebhookURL string `yaml:"webhook_url"`
	Token      string `yaml:"token"`
	URL        string `yaml:"url"`
	Secret     string `yaml:"secret"`
}

// validate checks one sink; field is its path in the config, e.g. alerts[0].
// Secret values are never echoed.
func (a AlertConfig) validate(field string) []error {
	var errs []error
	bad := func(f string, value any, why string) {
		errs = append(errs, fmt.Errorf("%w: %s: %q: %s", errConfig, field+"."+f, fmt.Sprint(value), why))
	}
	inline := func(f, value, instead string) {
		if value != "" {
			errs = append(errs, fmt.Errorf("%w: %s: [redacted]: secrets are not written in the config; use %s", errConfig, field+"."+f, instead))
		}
	}
	inline("webhook_url", a.WebhookURL, "webhook_url_file or webhook_url_env")
	inline("token", a.Token, "token_file or token_env")
	inline("url", a.URL, "url_file or url_env")
	inline("secret", a.Secret, "secret_file or secret_env")
	// secret checks a file-or-variable pair; required says one must be set.
	secret := func(fileKey, file, envKey, env string, required bool) {
		switch {
		case file != "" && env != "":
			bad(fileKey, file, "set only one of "+fileKey+" and "+envKey)
		case file == "" && env == "" && required:
			bad(fileKey, file, "set "+fileKey+" or "+envKey)
		case file != "" && !filepath.IsAbs(file):
			bad(fileKey, file, "must be an absolute path")
		}
	}
	only := func(types string, keys map[string]bool) {
		for _, k := range slices.Sorted(maps.Keys(keys)) {
			if keys[k] {
				bad(k, "", "applies only to type "+types)
			}
		}
	}
	switch a.Type {
	case "stdout", "file":
		if a.Type == "file" && a.Path == "" {
			bad("path", a.Path, "must be set for type file")
		}
		if a.Format != "" && a.Format != "text" && a.Format != "json" {
			bad("format", a.Format, "must be text or json")
		}
		only("slack or webhook", map[string]bool{"webhook_url_file": a.WebhookURLFile != "", "webhook_url_env": a.WebhookURLEnv != "",
			"token_file": a.TokenFile != "", "token_env": a.TokenEnv != "", "channel": a.Channel != "",
			"url_file": a.URLFile != "", "url_env": a.URLEnv != "", "secret_file": a.SecretFile != "", "secret_env": a.SecretEnv != ""})
	case "slack":
		hook := a.WebhookURLFile != "" || a.WebhookURLEnv != ""
		bot := a.TokenFile != "" || a.TokenEnv != "" || a.Channel != ""
		switch {
		case hook && bot:
			bad("token_file", a.TokenFile, "a slack sink is a webhook (webhook_url_file or webhook_url_env) or a bot (token_file or token_env, and channel), not both")
		case bot:
			secret("token_file", a.TokenFile, "token_env", a.TokenEnv, true)
			if a.Channel == "" {
				bad("channel", a.Channel, "must be set for a slack bot")
			}
		default:
			secret("webhook_url_file", a.WebhookURLFile, "webhook_url_env", a.WebhookURLEnv, true)
			if a.Updates != "" {
				bad("updates", a.Updates, "applies only to a slack bot (token_file or token_env); a webhook cannot edit what it posted")
			}
		}
		if a.Updates != "" && a.Updates != "edit" && a.Updates != "thread" {
			bad("updates", a.Updates, "must be edit or thread")
		}
		only("stdout, file or webhook", map[string]bool{"path": a.Path != "", "format": a.Format != "",
			"url_file": a.URLFile != "", "url_env": a.URLEnv != "", "secret_file": a.SecretFile != "", "secret_env": a.SecretEnv != ""})
	case "webhook":
		secret("url_file", a.URLFile, "url_env", a.URLEnv, true)
		secret("secret_file", a.SecretFile, "secret_env", a.SecretEnv, false)
		only("stdout, file or slack", map[string]bool{"path": a.Path != "", "format": a.Format != "",
			"webhook_url_file": a.WebhookURLFile != "", "webhook_url_env": a.WebhookURLEnv != "",
			"token_file": a.TokenFile != "", "token_env": a.TokenEnv != "", "channel": a.Channel != "", "updates": a.Updates != ""})
	default:
		bad("type", a.Type, "must be stdout, file, slack or webhook")
	}
	if a.Timeout < 0 || a.Timeout > 5*time.Minute {
		bad("timeout", a.Timeout, "must be between 0s (default 10s) and 5m")
	}
	if a.Rate < 0 || a.Rate > 1000 {
		bad("rate", a.Rate, "must be between 0 (default) and 1000 messages per second")
	}
	if a.Cooldown < 0 || a.Cooldown > 24*time.Hour {
		bad("cooldown", a.Cooldown, "must be between 0s (default) and 24h")
	}
	if a.StormThreshold < -1 {
		bad("storm_threshold", a.StormThreshold, "must be -1 (never group), 0 (default 5) or more")
	}
	if a.Name != "" && strings.ContainsAny(a.Name, " \t\n") {
		bad("name", a.Name, "must not contain spaces")
	}
	return errs
}

// readSecret reads a secret from the file or the variable the config names.
// Errors name the field and the file or variable, never the secret.
func readSecret(field, fileKey, file, envKey, env string) (string, error) {
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%w: %s.%s: %q: %w", errConfig, field, fileKey, file, err)
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return "", fmt.Errorf("%w: %s.%s: %q: is empty", errConfig, field, fileKey, file)
		}
		return v, nil
	case env != "":
		v := strings.TrimSpace(os.Getenv(env))
		if v == "" {
			return "", fmt.Errorf("%w: %s.%s: %q: the variable is not set or empty", errConfig, field, envKey, env)
		}
		return v, nil
	}
	return "", nil
}

// secretFileTooOpen reports whether a secret file can be read by others.
func secretFileTooOpen(file string) bool {
	if file == "" {
		return false
	}
	st, err := os.Stat(file)
	return err == nil && st.Mode().Perm()&0o077 != 0
}

// checkURL checks a secret URL without echoing it.
func checkURL(field, key, where, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%w: %s.%s: %q: does not hold an http(s) URL", errConfig, field, key, where)
	}
	return nil
}

// sinkNames gives every sink its destination name: its name, or its type
// numbered from the second of a type on.
func sinkNames(alerts []AlertConfig) []string {
	names := make([]string, len(alerts))
	seen := map[string]int{}
	for i, a := range alerts {
		if a.Name != "" {
			names[i] = a.Name
			continue
		}
		seen[a.Type]++
		names[i] = a.Type
		if n := seen[a.Type]; n > 1 {
			names[i] = fmt.Sprintf("%s-%d", a.Type, n)
		}
	}
	return names
}
