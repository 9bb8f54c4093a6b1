package pgwire

import (
	"crypto/md5" // #nosec G501 -- PostgreSQL's md5 password method, for roles that still have one
	"crypto/subtle"
	"encoding/hex"
	"strings"
)

// IsMD5Hash reports whether a stored password is PostgreSQL's MD5 form:
// "md5" and 32 hex digits of md5(password || role).
func IsMD5Hash(s string) bool {
	if len(s) != 35 || !strings.HasPrefix(s, "md5") {
		return false
	}
	_, err := hex.DecodeString(s[3:])
	return err == nil
}

// MD5Response is what a client answers to AuthenticationMD5Password with
// salt, given the stored hash ("md5..." as pg_authid keeps it): the stored
// hash is all a client needs, which is why PgBouncer can pass it through.
func MD5Response(storedHash string, salt [4]byte) string {
	sum := md5.Sum(append([]byte(strings.TrimPrefix(storedHash, "md5")), salt[:]...))
	return "md5" + hex.EncodeToString(sum[:])
}

// MD5Matches checks a client's answer to AuthenticationMD5Password against
// the stored hash, in constant time.
func MD5Matches(storedHash string, salt [4]byte, answer string) bool {
	return subtle.ConstantTimeCompare([]byte(MD5Response(storedHash, salt)), []byte(answer)) == 1
}
