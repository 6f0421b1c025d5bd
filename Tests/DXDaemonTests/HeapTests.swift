import DXControl
@testable import DXDaemon
import Foundation
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

    /// The account reads this process: a heap in use that grows by what was allocated, the
    /// caches within their limits, the working heap what is left.
    @Test func theAccountSeesAnAllocation() throws {
        let before = try #require(Heap.account())
        let block = [UInt8](repeating: 7, count: 32 << 20)
        let during = try #require(Heap.account())
        #expect(during.heapInUseBytes - before.heapInUseBytes >= 30 << 20, "\(before) → \(during)")
        #expect(block.count == 32 << 20)
        #expect(during.residentBytes >= during.anonymousBytes && during.anonymousBytes > 0)
        #expect(during.sqliteBytes <= during.sqliteLimitBytes && during.logRingBytes <= during.logRingLimitBytes)
        #expect(during.workingHeapBytes == during.heapInUseBytes - during.sqliteBytes - during.logRingBytes)
    }
}
