package registrar

import (
	"testing"

	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }
