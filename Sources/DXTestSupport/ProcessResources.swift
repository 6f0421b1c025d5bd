import Foundation

/// What a running process holds, read from /proc (Linux): resident memory, open file
/// descriptors and threads. For tests that check a long run does not grow.
public struct ProcessResources: Sendable, Equatable, CustomStringConvertible {
    /// Resident set size, kB (`VmRSS`).
    public let residentKB: Int
    /// Of it, anonymous memory (`RssAnon`: the heap, stacks) and pages of files (`RssFile`:
    /// code and data of the executable and its libraries, mapped and paged in as first used).
    public let anonymousKB: Int
    public let fileKB: Int
    /// Open file descriptors (entries of /proc/PID/fd).
    public let fileDescriptors: Int
    public let threads: Int

    public init(residentKB: Int, anonymousKB: Int = 0, fileKB: Int = 0, fileDescriptors: Int, threads: Int) {
        self.residentKB = residentKB
        self.anonymousKB = anonymousKB
        self.fileKB = fileKB
        self.fileDescriptors = fileDescriptors
        self.threads = threads
    }

    /// The process's resources now; nil when it has gone (or /proc cannot be read).
    public static func of(pid: Int32) -> ProcessResources? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd") else { return nil }
        func field(_ name: String) -> Int? {
            status.split(separator: "\n").first { $0.hasPrefix(name + ":") }
                .flatMap { Int($0.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces).split(separator: " ").first ?? "") }
        }
        guard let rss = field("VmRSS"), let threads = field("Threads") else { return nil }
        return ProcessResources(residentKB: rss, anonymousKB: field("RssAnon") ?? rss, fileKB: field("RssFile") ?? 0,
                                fileDescriptors: fds.count, threads: threads)
    }

    /// The children of a process (from /proc/PID/task/*/children).
    public static func children(of pid: Int32) -> [Int32] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.flatMap { task -> [Int32] in
            let text = (try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/children", encoding: .utf8)) ?? ""
            return text.split(separator: " ").compactMap { Int32($0) }
        }
    }

    public var description: String {
        String(format: "%.1f MB resident (%.1f MB anonymous, %.1f MB of files), %d fds, %d threads", Double(residentKB) / 1024,
               Double(anonymousKB) / 1024, Double(fileKB) / 1024, fileDescriptors, threads)
    }
}

extension ProcessResources {
    /// What each open descriptor of a process points at (`readlink /proc/PID/fd/N`), by number:
    /// to say what a descriptor count that grew is made of.
    public static func openFiles(of pid: Int32) -> [Int: String] {
        let dir = "/proc/\(pid)/fd"
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        var files: [Int: String] = [:]
        for e in entries {
            guard let n = Int(e) else { continue }
            files[n] = (try? FileManager.default.destinationOfSymbolicLink(atPath: dir + "/" + e)) ?? "?"
        }
        return files
    }
}
