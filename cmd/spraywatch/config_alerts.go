package main

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
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
	// APIURL is the bot's Slack Web API base. Default
	// https://slack.com/api/ (GovSlack: https://slack-gov.com/api/).
	APIURL string `yaml:"api_url"`

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
// Secret values are never echoed, nor are the values of the keys that name
// where a secret is (*_file, *_env): a secret put there by mistake would be.
func (a AlertConfig) validate(field string) []error {
	var errs []error
	bad := func(f string, value any, why string) {
		errs = append(errs, fmt.Errorf("%w: %s: %q: %s", errConfig, field+"."+f, fmt.Sprint(value), why))
	}
	badRef := func(f, why string) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", errConfig, field+"."+f, why))
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
	// Every file or variable named, whatever the type: a secret in its
	// place is reported as such.
	for _, r := range a.secretRefs() {
		if why := r.problem(); why != "" {
			badRef(r.key, why)
		}
	}
	// secret checks a file-or-variable pair; required says one must be set.
	secret := func(fileKey, file, envKey, env string, required bool) {
		switch {
		case file != "" && env != "":
			badRef(fileKey, "set only one of "+fileKey+" and "+envKey)
		case file == "" && env == "" && required:
			bad(fileKey, "", "set "+fileKey+" or "+envKey)
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
			badRef("token_file", "a slack sink is a webhook (webhook_url_file or webhook_url_env) or a bot (token_file or token_env, and channel), not both")
		case bot:
			secret("token_file", a.TokenFile, "token_env", a.TokenEnv, true)
			if a.Channel == "" {
				bad("channel", a.Channel, "must be set for a slack bot")
			}
			if u, err := url.Parse(a.APIURL); a.APIURL != "" && (err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil) {
				bad("api_url", a.APIURL, "must be an http(s) URL such as https://slack.com/api/, without credentials")
			}
		default:
			secret("webhook_url_file", a.WebhookURLFile, "webhook_url_env", a.WebhookURLEnv, true)
			if a.Updates != "" {
				bad("updates", a.Updates, "applies only to a slack bot (token_file or token_env); a webhook cannot edit what it posted")
			}
			if a.APIURL != "" {
				bad("api_url", a.APIURL, "applies only to a slack bot (token_file or token_env)")
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
			"token_file": a.TokenFile != "", "token_env": a.TokenEnv != "", "channel": a.Channel != "", "updates": a.Updates != "",
			"api_url": a.APIURL != ""})
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

// secretRef is a config key that names where a secret is: a file or an
// environment variable.
type secretRef struct {
	key, value string
	env        bool
}

// secretRefs returns the keys set that name a file or a variable.
func (a AlertConfig) secretRefs() []secretRef {
	var refs []secretRef
	for _, r := range []secretRef{
		{"webhook_url_file", a.WebhookURLFile, false}, {"webhook_url_env", a.WebhookURLEnv, true},
		{"token_file", a.TokenFile, false}, {"token_env", a.TokenEnv, true},
		{"url_file", a.URLFile, false}, {"url_env", a.URLEnv, true},
		{"secret_file", a.SecretFile, false}, {"secret_env", a.SecretEnv, true},
	} {
		if r.value != "" {
			refs = append(refs, r)
		}
	}
	return refs
}

// envName is what a variable named in the config may be called.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// problem says what is wrong with the file or variable named, without
// echoing it; "" when nothing is.
func (r secretRef) problem() string {
	switch {
	case looksLikeSecret(r.value, r.env):
		return "this looks like the secret itself; put it in a file or environment variable and name that here"
	case r.env && !envName.MatchString(r.value):
		return "must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"
	case !r.env && !filepath.IsAbs(r.value):
		return "must be an absolute path"
	}
	return ""
}

// looksLikeSecret reports whether a value that should name a file or a
// variable is rather a URL, a Slack token or a long key. Variable names are
// taken to be upper case; a file named by an absolute path is a file.
func looksLikeSecret(v string, env bool) bool {
	switch {
	case strings.Contains(v, "://"), strings.Contains(v, "hooks.slack.com"):
		return true
	case len(v) > 5 && strings.HasPrefix(v, "xox") && (v[4] == '-' || v[4] == '.'), strings.HasPrefix(v, "xapp-"):
		return true
	case !env && filepath.IsAbs(v):
		return false
	}
	// A long run of letters and digits with lower case and a digit in it:
	// a token or a key (hex, base62), not a name.
	run, lower, digit := 0, false, false
	for _, c := range v + " " {
		switch {
		case c >= 'a' && c <= 'z':
			run, lower = run+1, true
		case c >= '0' && c <= '9':
			run, digit = run+1, true
		case c >= 'A' && c <= 'Z':
			run++
		default:
			if run >= 20 && lower && digit {
				return true
			}
			run, lower, digit = 0, false, false
		}
	}
	return false
}

// readSecret reads a secret from the file or the variable the config names.
// Errors name the field, never the secret nor the file or variable (which
// could be the secret, misplaced).
func readSecret(field, fileKey, file, envKey, env string) (string, error) {
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err // its text holds the path
			}
			return "", fmt.Errorf("%w: %s.%s: cannot read the file: %w", errConfig, field, fileKey, err)
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return "", fmt.Errorf("%w: %s.%s: the file is empty", errConfig, field, fileKey)
		}
		return v, nil
	case env != "":
		v := strings.TrimSpace(os.Getenv(env))
		if v == "" {
			return "", fmt.Errorf("%w: %s.%s: the variable is not set or empty", errConfig, field, envKey)
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

// checkURL checks a secret URL without echoing it, nor where it is.
func checkURL(field, key, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%w: %s.%s: does not hold an http(s) URL", errConfig, field, key)
	}
	return nil
}

// sinkSecrets are the secrets one sink needs, read from where the config
// says.
type sinkSecrets struct {
	// url is a slack webhook's or a webhook's; token a slack bot's; key a
	// webhook's signing secret.
	url, token, key string
	// files are the files read, for a warning when others can read them.
	files []string
}

// readSinkSecrets reads and checks the secrets of one sink, as run and
// check both do. field is its path in the config, e.g. alerts[0].
func readSinkSecrets(field string, ac AlertConfig) (sinkSecrets, error) {
	var s sinkSecrets
	var err error
	switch ac.Type {
	case "slack":
		if ac.WebhookURLFile != "" || ac.WebhookURLEnv != "" {
			if s.url, err = readSecret(field, "webhook_url_file", ac.WebhookURLFile, "webhook_url_env", ac.WebhookURLEnv); err != nil {
				return s, err
			}
			if err := checkURL(field, secretKey(ac.WebhookURLFile, "webhook_url_file", "webhook_url_env"), s.url); err != nil {
				return s, err
			}
			s.files = append(s.files, ac.WebhookURLFile)
			break
		}
		if s.token, err = readSecret(field, "token_file", ac.TokenFile, "token_env", ac.TokenEnv); err != nil {
			return s, err
		}
		s.files = append(s.files, ac.TokenFile)
	case "webhook":
		if s.url, err = readSecret(field, "url_file", ac.URLFile, "url_env", ac.URLEnv); err != nil {
			return s, err
		}
		if err := checkURL(field, secretKey(ac.URLFile, "url_file", "url_env"), s.url); err != nil {
			return s, err
		}
		if s.key, err = readSecret(field, "secret_file", ac.SecretFile, "secret_env", ac.SecretEnv); err != nil {
			return s, err
		}
		s.files = append(s.files, ac.URLFile, ac.SecretFile)
	}
	return s, nil
}

// checkAlertSecrets reads every sink's secrets, as run does, and returns
// every problem.
func checkAlertSecrets(alerts []AlertConfig) error {
	var errs []error
	for i, ac := range alerts {
		if _, err := readSinkSecrets(fmt.Sprintf("alerts[%d]", i), ac); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func secretKey(file, fileKey, envKey string) string {
	if file != "" {
		return fileKey
	}
	return envKey
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
