import DXSpawn
import Testing

/// A program run to its end: its status, found on the PATH or not, and started with no signal
/// blocked whatever the calling thread blocks (a blocked SIGTERM survives exec).
@Suite struct SpawnTests {
    @Test func statusesAndThePath() throws {
        #expect(try Spawn.run("/bin/sh", ["-c", "exit 3"]) == 3)
        #expect(try Spawn.run("true", [], searchingPath: true) == 0)
        #expect(try Spawn.run("false", [], searchingPath: true) == 1)
        #expect(throws: Spawn.Failed.self) { try Spawn.run("dexa-no-such-program", [], searchingPath: true) }
        #expect(throws: Spawn.Failed.self) { try Spawn.run("true", []) }
    }

    /// The test runs on a cooperative thread, which blocks most signals: the program must
    /// still die of the SIGTERM it sends itself (128 + 15), not sleep on.
    @Test func theProgramCanBeTerminated() async throws {
        let status = try await onThreadOfItsOwn { try Spawn.run("/bin/sh", ["-c", "kill -TERM $$; sleep 5; exit 0"]) }
        #expect(status == 128 + 15)
        #expect(try Spawn.run("/bin/sh", ["-c", "kill -TERM $$; sleep 5; exit 0"]) == 128 + 15)
    }
}
