package output

import (
	"fmt"
	"os"
	"strings"
)

// readSecretFile reads a shared key or password from a file, as a Secret
// mounted as a volume holds it: surrounding whitespace (the newline an
// editor or echo adds) is not part of it.
func readSecretFile(key, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s: %s is empty", key, path)
	}
	return s, nil
}

// secrets returns a's shared key, user name and password, reading the files
// it names.
func (a ServerAuth) secrets() (key, user, password string, err error) {
	key, password = a.SharedKey, a.Password
	if a.SharedKeyFile != "" {
		if key, err = readSecretFile("shared_key_file", a.SharedKeyFile); err != nil {
			return "", "", "", err
		}
	}
	if a.PasswordFile != "" {
		if password, err = readSecretFile("password_file", a.PasswordFile); err != nil {
			return "", "", "", err
		}
	}
	return key, a.Username, password, nil
}

// checkSecretFiles reads every shared key and password file cfg names, so
// that one that is missing or empty is found when the configuration is
// loaded; they are read again at every connect.
func checkSecretFiles(cfg ForwardConfig) error {
	check := func(path string, a ServerAuth) error {
		for _, f := range []struct{ key, name string }{{"shared_key_file", a.SharedKeyFile}, {"password_file", a.PasswordFile}} {
			if f.name != "" {
				if _, err := readSecretFile(path+"."+f.key, f.name); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := check("forward", cfg.auth()); err != nil {
		return err
	}
	for i, s := range cfg.Servers {
		if err := check(fmt.Sprintf("forward.servers[%d]", i), s.ServerAuth); err != nil {
			return err
		}
	}
	return check("forward.discovery", cfg.Discovery.ServerAuth)
}

// needsHandshake reports whether any server of cfg has a shared key.
func needsHandshake(cfg ForwardConfig) bool {
	for _, s := range cfg.Servers {
		if s.ServerAuth.or(cfg.auth()).enabled() {
			return true
		}
	}
	return cfg.Discovery.Name != "" && cfg.Discovery.ServerAuth.or(cfg.auth()).enabled()
}
