package activity

import (
	"encoding/base64"
	"strings"
)

// base64Chunk is a multiple of 3 bytes, so that only the last chunk is padded.
const base64Chunk = 768

// WriteBase64 writes b to sb in standard base64, through buffers on the stack rather than
// the slice and string base64.StdEncoding.EncodeToString allocates (and, for a string, the
// copy []byte(s) would make of an input of up to a mebibyte).
func WriteBase64[T string | []byte](sb *strings.Builder, b T) {
	enc := base64.StdEncoding
	var chunk [base64Chunk]byte
	var encoded [base64Chunk / 3 * 4]byte
	for len(b) > 0 {
		n := copy(chunk[:], b)
		enc.Encode(encoded[:], chunk[:n])
		sb.Write(encoded[:enc.EncodedLen(n)])
		b = b[n:]
	}
}
