import DXControl
@testable import DXDaemon
import Foundation
import Synchronization
import Testing

/// The daemon's memory account and its bounded log ring (docs/RELIABILITY.md, "A clinic day").
@Suite("Heap: the memory account and the log ring")
struct HeapTests {
    /// The ring holds the newest lines, never more than its lines or its bytes; a line longer
    /// than the whole ring is cut, not allowed to empty it.
    @Test func theLogRingIsBoundedByLinesAndBytes() {
        let byLines = LogRing(capacity: 3, maxBytes: 1 << 20)
        for i in 1...10 { byLines.append("line \(i)") }
        #expect(byLines.text == "line 8\nline 9\nline 10\n")
        #expect(byLines.count == 3 && byLines.bytes == "line 8line 9line 10".utf8.count)

        let byBytes = LogRing(capacity: 1000, maxBytes: 100)
        for i in 0..<50 { byBytes.append(String(format: "%02d-%@", i, String(repeating: "x", count: 17))) }   // 20 bytes each
        #expect(byBytes.count == 5 && byBytes.bytes == 100)
        #expect(byBytes.text.hasPrefix("45-") && byBytes.text.hasSuffix("49-" + String(repeating: "x", count: 17) + "\n"))

        byBytes.append("é" + String(repeating: "y", count: 500))
        #expect(byBytes.count == 1 && byBytes.bytes <= 100 && byBytes.text.hasPrefix("é"))
    }

    /// A runaway line is cut at 8 kB, on a character's first byte (no replacement character
    /// from a split sequence), and marked; the ring's heap estimate follows what it holds and
    /// stays under its ceiling.
    @Test func aLongLineIsCutAtACharacter() {
        let ring = LogRing(capacity: 100, maxBytes: 1 << 20)
        let empty = ring.heapBytes
        ring.append(String(repeating: "é", count: 10_000))            // 20,000 bytes, 2 each
        let kept = ring.text.dropLast()                                  // the newline
        #expect(kept.utf8.count <= LogRing.maxLineBytes && kept.utf8.count > LogRing.maxLineBytes - 8)
        #expect(kept.hasSuffix("…") && !kept.contains("\u{FFFD}") && kept.dropLast().allSatisfy { $0 == "é" })
        #expect(LogRing.cut("€€€", to: 7) == "€…")                      // 3-byte characters: one fits beside the mark
        #expect(LogRing.cut("€€€", to: 5) == "…")                       // none does
        #expect(LogRing.cut("a€€€", to: 8) == "a€…")                    // not the half of the second
        #expect(LogRing.cut("a€€", to: 7) == "a€€")                     // 7 bytes: whole
        #expect(LogRing.cut("short", to: 7) == "short")
        #expect(ring.heapBytes >= empty + kept.utf8.count && ring.heapBytes <= ring.maxHeapBytes)
        for i in 0..<1000 { ring.append("line \(i) of the log, long enough to be on the heap") }
        #expect(ring.count == 100 && ring.heapBytes <= ring.maxHeapBytes)
        #expect(LogRing.heapBytes("fifteen bytes!!") == 0 && LogRing.heapBytes(String(repeating: "x", count: 16)) == 64)
    }

    /// The account reads this process: a heap in use that holds what was allocated, SQLite's
    /// page caches within all of SQLite's memory.
    @Test func theAccountSeesAnAllocation() throws {
        let block = [UInt8](repeating: 7, count: 32 << 20)
        let during = try #require(Heap.account())
        // Absolute, not a difference: other suites allocate and free at the same time.
        #expect(during.heapInUseBytes >= 32 << 20, "\(during)")
        #expect(block.count == 32 << 20)
        #expect(during.residentBytes >= during.anonymousBytes && during.anonymousBytes >= 32 << 20)
        #expect(during.sqlitePageCacheBytes <= during.sqliteBytes)
        #expect(during.logRingLimitBytes >= LogRing.shared.maxBytes)
    }

    /// Trims after a request, at most once a second; a request inside the second gets one at
    /// its end (the last of a burst is always followed by a trim), and more requests in that
    /// second add none.
    @Test func trimsAreAtMostOneASecondAndNoneIsLost() {
        var s = TrimSchedule()
        #expect(s.requestEnded(at: .milliseconds(0)) == .now)
        #expect(s.requestEnded(at: .milliseconds(100)) == .at(.milliseconds(1000)))
        #expect(s.requestEnded(at: .milliseconds(500)) == .nothing)
        #expect(s.requestEnded(at: .milliseconds(999)) == .nothing)
        s.ran(at: .milliseconds(1000))
        #expect(s.requestEnded(at: .milliseconds(1500)) == .at(.milliseconds(2000)))
        s.ran(at: .milliseconds(2001))
        #expect(s.requestEnded(at: .milliseconds(3001)) == .now)
        #expect(s.requestEnded(at: .seconds(60)) == .now)
    }

    /// The trimmer on its schedule: a burst of requests gives one trim at once and one when
    /// the second is up, whenever the waiting ends.
    @Test func theTrimmerTrimsABurstTwice() async {
        let time = Mutex(Duration.zero)
        let trims = Mutex(0)
        let (woken, wake) = AsyncStream<Void>.makeStream()
        let (slept, sleeping) = AsyncStream<Duration>.makeStream()
        let (trimmed, trimming) = AsyncStream<Void>.makeStream()
        let trimmer = HeapTrimmer(now: { time.withLock { $0 } }, sleep: { d in
            sleeping.yield(d)
            for await _ in woken { return }
        }, trim: { trims.withLock { $0 += 1 }; trimming.yield() })
        trimmer.requestEnded()
        #expect(trims.withLock { $0 } == 1)
        time.withLock { $0 = .milliseconds(300) }
        for _ in 0..<5 { trimmer.requestEnded() }
        var waits = slept.makeAsyncIterator()
        #expect(await waits.next() == .milliseconds(700))
        #expect(trims.withLock { $0 } == 1)
        time.withLock { $0 = .milliseconds(1000) }
        wake.yield()
        var done = trimmed.makeAsyncIterator()
        _ = await done.next()   // the first
        _ = await done.next()   // the one at the second's end
        #expect(trims.withLock { $0 } == 2)
        // The next request, a second after that one: at once.
        time.withLock { $0 = .milliseconds(2000) }
        trimmer.requestEnded()
        #expect(trims.withLock { $0 } == 3)
    }
}
