package main

import "fmt"

// AlertConfig is one sink.
type AlertConfig struct {
	// Type: stdout or file.
	Type string `yaml:"type"`
	// Format: text (default for stdout) or json (JSON lines).
	Format string `yaml:"format"`
	Path   string `yaml:"path"`
}

// validate checks one sink; field is its path in the config, e.g. alerts[0].
func (a AlertConfig) validate(field string) []error {
	var errs []error
	bad := func(f string, value any, why string) {
		errs = append(errs, fmt.Errorf("%w: %s: %q: %s", errConfig, field+"."+f, fmt.Sprint(value), why))
	}
	switch a.Type {
	case "stdout":
	case "file":
		if a.Path == "" {
			bad("path", a.Path, "must be set for type file")
		}
	default:
		bad("type", a.Type, "must be stdout or file")
	}
	if a.Format != "" && a.Format != "text" && a.Format != "json" {
		bad("format", a.Format, "must be text or json")
	}
	return errs
}
