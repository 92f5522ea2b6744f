package expr_test

import (
	"strings"
	"testing"

	"github.com/parley-dev/parley/rules/expr"
)

func TestParleyLibrary(t *testing.T) {
	env := newEnv(t, 1024)
	for src, want := range map[string]string{
		"hex(b'\\x00\\xffA')":                      "00ff41",
		"hex('hi')":                                "6869",
		"unhex('00ff41') == b'\\x00\\xffA'":        "true",
		"unhex('ABCD') == b'\\xab\\xcd'":           "true",
		"hex(sha256(''))":                          "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		"sha256('abc') == sha256(b'abc')":          "true",
		"crc32('123456789')":                       "3421780262",
		"crc32(b'')":                               "0",
		"hex(be8(255))":                            "ff",
		"hex(le8(-1))":                             "ff",
		"hex(be16(258))":                           "0102",
		"hex(le16(258))":                           "0201",
		"hex(be16(-1))":                            "ffff",
		"hex(be32(1))":                             "00000001",
		"hex(le32(1))":                             "01000000",
		"hex(be64(-2))":                            "fffffffffffffffe",
		"hex(le64(1))":                             "0100000000000000",
		"fromBE(b'\\x01\\x02')":                    "258",
		"fromLE(b'\\x01\\x02')":                    "513",
		"fromBE(b'\\xff')":                         "255",
		"fromBE(be64(-2))":                         "-2",
		"fromLE(le32(123456))":                     "123456",
		"hex(b'\\x01\\x02\\x03\\x04'.slice(1, 3))": "0203",
		"b'abc'.slice(0, 0).size()":                "0",
		"hex(raw.slice(0, 2) + be16(raw.size()))":  "50490006",
		"[1, 2, 3].slice(1, 2)[0]":                 "2", // the lists extension's slice still works
	} {
		if got := eval(t, env, src, "PING\r\n").String(); got != want {
			t.Errorf("%s = %q, want %q", src, got, want)
		}
	}
}

func TestParleyLibraryErrors(t *testing.T) {
	env := newEnv(t, 1024)
	for src, want := range map[string]string{
		"unhex('abc')":         "unhex: encoding/hex: odd length hex string",
		"unhex('zz')":          "unhex: encoding/hex: invalid byte",
		"be16(65536)":          "be16(65536): does not fit 16 bits",
		"le8(-129)":            "le8(-129): does not fit 8 bits",
		"be32(4294967296)":     "does not fit 32 bits",
		"fromBE(b'')":          "fromBE: takes 1 to 8 bytes, not 0",
		"fromLE(b'123456789')": "fromLE: takes 1 to 8 bytes, not 9",
		"b'abc'.slice(2, 1)":   "slice(2, 1): out of range for 3 bytes",
		"b'abc'.slice(0, 4)":   "slice(0, 4): out of range for 3 bytes",
		"b'abc'.slice(-1, 2)":  "out of range",
		"raw.slice(0, 99)":     "out of range for 6 bytes",
	} {
		p, err := env.Compile(src, expr.Printable)
		if err != nil {
			t.Errorf("%s: %v", src, err)
			continue
		}
		_, err = p.Eval(newActivation(env, "PING\r\n"))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want it to hold %q", src, err, want)
		}
	}
}
