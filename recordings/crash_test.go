package recordings

const crashChildEnv = "RECORDINGS_CRASH_CHILD"

func crashChild() {}
