// Package exampleenv decides where the programs under examples/ run: in
// memory, against the fakes, unless the environment points at AWS or at
// local emulators.
package exampleenv

import "os"

// awsVars are the variables that say "use AWS": endpoint overrides (local
// emulators, LocalStack) and the usual ways to name credentials. Shared
// config files alone do not count, so that running an example on a machine
// that has ~/.aws never touches an AWS account by surprise.
var awsVars = []string{
	"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_DYNAMODB",
	"AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_WEB_IDENTITY_TOKEN_FILE",
	"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
}

// UseAWS reports whether the examples should use AWS (or the endpoints the
// environment overrides) rather than the in-memory fakes.
func UseAWS() bool {
	for _, v := range awsVars {
		if os.Getenv(v) != "" {
			return true
		}
	}
	return false
}

// EmulatedSQS reports whether SQS requests go to an overridden endpoint,
// most likely a local emulator. Some emulators hold a long poll open until
// it has every message it asked for, so callers should poll with short waits.
func EmulatedSQS() bool {
	return os.Getenv("AWS_ENDPOINT_URL_SQS") != "" || os.Getenv("AWS_ENDPOINT_URL") != ""
}
