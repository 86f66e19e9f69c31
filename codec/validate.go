package codec

import (
	"errors"
	"unicode/utf8"
)

// Limits on names and passwords that both ends check.
const (
	MinName         = 3
	MaxName         = 32
	MinPassword     = 8
	MaxPassword     = 128
	MaxGroupName    = 64
	DefaultMaxGroup = 256
)

var (
	errNameLength = errors.New("name must be 3 to 32 bytes")
	errNameChars  = errors.New("name may hold only a-z, 0-9, '.', '_' and '-', starting with a letter or digit")
	errPassLength = errors.New("password must be 8 to 128 bytes")
	errGroupName  = errors.New("group name must be 1 to 64 bytes of UTF-8")
)

// ValidateName checks a user name: 3 to 32 bytes of lower-case ASCII
// letters, digits, '.', '_' and '-', starting with a letter or digit. Names
// are compared byte for byte, so the lower-case rule keeps "Bob" and "bob"
// from being two users.
func ValidateName(name []byte) error {
	if len(name) < MinName || len(name) > MaxName {
		return errNameLength
	}
	for i, c := range name {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0:
		default:
			return errNameChars
		}
	}
	return nil
}

// ValidatePassword checks a password's length (any bytes are allowed).
func ValidatePassword(p []byte) error {
	if len(p) < MinPassword || len(p) > MaxPassword {
		return errPassLength
	}
	return nil
}

// ValidateGroupName checks a group name: 1 to 64 bytes of valid UTF-8.
func ValidateGroupName(name []byte) error {
	if len(name) == 0 || len(name) > MaxGroupName || !utf8.Valid(name) {
		return errGroupName
	}
	return nil
}
