package connector

import (
	"strings"
	"time"
)

// SetRetryWait replaces the pause before a retry after a temporary accept or read error,
// for tests to see the pauses without waiting them out. Call it before serving.
func SetRetryWait(c *Connector, wait func(time.Duration)) {
	c.retryWait = func(d time.Duration, _ <-chan struct{}) { wait(d) }
}

// Base64String is the reply recorder's base64 encoder, for its test.
func Base64String(b []byte) string {
	var sb strings.Builder
	writeBase64(&sb, b)
	return sb.String()
}
