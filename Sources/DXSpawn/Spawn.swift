import CGlibcExtras
import Foundation

/// Runs blocking work on a thread of its own and resumes the caller with its result.
public func onThreadOfItsOwn<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { c in
        Thread { c.resume(with: Result { try body() }) }.start()
    }
}

/// A program run to its end with posix_spawn and waitpid, from the calling thread. Not
/// Foundation's `Process`: on Linux its wait runs a run loop, which leaves an epoll, an eventfd
/// and a timerfd open on every thread that ever waited, and blocks a cooperative thread
/// meanwhile (the clinic day found 11 descriptors left open after one service report). Used by
/// dexad (the service report's tar) and by `dexa-console --open` (systemctl, xdg-open).
public enum Spawn {
    public struct Failed: Error, CustomStringConvertible {
        public let description: String
    }

    /// The program's exit status (128 + the signal when a signal ended it). Its standard input
    /// and output are /dev/null; its standard error is the caller's (the journal). `path` is a
    /// path, or with `searchingPath` a name looked up on the PATH (`posix_spawnp`).
    public static func run(_ path: String, _ arguments: [String], searchingPath: Bool = false) throws -> Int32 {
        var actions = posix_spawn_file_actions_t()
        guard posix_spawn_file_actions_init(&actions) == 0 else { throw Failed(description: "cannot start \(path): no memory") }
        defer { posix_spawn_file_actions_destroy(&actions) }
        // Standard input and output /dev/null; no descriptor of the daemon's but standard
        // error (the audit log, captures, sockets) reaches the program.
        guard posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0) == 0,
              posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0) == 0,
              dx_spawn_close_from(&actions, 3) == 0 else {
            throw Failed(description: "cannot start \(path): the file actions were refused")
        }
        // The calling thread descends from a dispatch worker (or is a cooperative one), which blocks most signals; a
        // mask survives exec, and a tar that cannot get SIGTERM holds up `systemctl stop`.
        // The program starts with no signal blocked and every signal at its default.
        var attributes = posix_spawnattr_t()
        guard posix_spawnattr_init(&attributes) == 0 else { throw Failed(description: "cannot start \(path): no memory") }
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t(), all = sigset_t()
        sigemptyset(&none)
        sigfillset(&all)
        sigdelset(&all, SIGKILL)
        sigdelset(&all, SIGSTOP)
        guard posix_spawnattr_setsigmask(&attributes, &none) == 0, posix_spawnattr_setsigdefault(&attributes, &all) == 0,
              posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)) == 0 else {
            throw Failed(description: "cannot start \(path): the signal attributes were refused")
        }
        let copies = ([path] + arguments).map { strdup($0) }
        defer { copies.forEach { free($0) } }
        guard copies.allSatisfy({ $0 != nil }) else { throw Failed(description: "cannot start \(path): no memory") }
        let argv: [UnsafeMutablePointer<CChar>?] = copies + [nil]
        var pid: pid_t = 0
        let rc = searchingPath ? posix_spawnp(&pid, path, &actions, &attributes, argv, environ)
                               : posix_spawn(&pid, path, &actions, &attributes, argv, environ)
        guard rc == 0 else { throw Failed(description: "cannot start \(path): \(String(cString: strerror(rc)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 {
            guard errno == EINTR else { throw Failed(description: "waiting for \(path): \(String(cString: strerror(errno)))") }
        }
        // WIFEXITED / WEXITSTATUS / WTERMSIG, which Swift does not import (they are macros).
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }
}
