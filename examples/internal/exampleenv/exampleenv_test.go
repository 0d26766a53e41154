package exampleenv

import "testing"

func TestInMemoryUnlessTheEnvironmentPointsAtAWS(t *testing.T) {
	for _, v := range awsVars {
		t.Setenv(v, "")
	}
	if UseAWS() || EmulatedSQS() {
		t.Fatal("no AWS variable set, yet the examples would leave memory")
	}
	t.Setenv("AWS_PROFILE", "prod")
	if !UseAWS() {
		t.Fatal("AWS_PROFILE names credentials: use AWS")
	}
	if EmulatedSQS() {
		t.Fatal("a profile alone is not an emulator")
	}
	t.Setenv("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:4566")
	if !EmulatedSQS() {
		t.Fatal("an SQS endpoint override is an emulator")
	}
}
