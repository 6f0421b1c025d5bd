import DXAcquisition
import DXProtocol
import Testing

/// The timing checks on hand-made lines.
@Suite("Timing checks")
struct TimingTests {
    static func line(_ i: UInt32, at t: UInt64) -> ScanLine {
        ScanLine(index: i, yUm: Int32(i) * 1000, xUm: 0, tUs: t, flags: [.xrayOn], samples: [0, 0])
    }

    @Test func onCadenceIsQuiet() {
        var m = TimingMonitor(periodUs: 10_000)
        var warnings: [ExamWarning] = []
        for i in 0..<100 as Range<UInt32> { warnings += m.add(Self.line(i, at: 5_000 + UInt64(i) * 10_000 + UInt64(i % 3) * 300)) }
        warnings += m.finish()
        #expect(warnings.isEmpty, "\(warnings)")
    }

    @Test func aStallIsOffCadenceAndAnOverrun() {
        var m = TimingMonitor(periodUs: 10_000)
        var warnings: [ExamWarning] = []
        for i in 0..<50 as Range<UInt32> { warnings += m.add(Self.line(i, at: UInt64(i) * 10_000 + (i >= 20 ? 500_000 : 0))) }
        warnings += m.finish()
        #expect(warnings.map(\.kind) == [.jitter, .overrun])
        #expect(warnings.first?.line == 20)
    }

    @Test func aSlowRateIsReportedOnceThenEvery25Lines() {
        var m = TimingMonitor(periodUs: 10_000)
        var warnings: [ExamWarning] = []
        for i in 0..<60 as Range<UInt32> { warnings += m.add(Self.line(i, at: UInt64(i) * 15_000)) }
        warnings += m.finish()
        #expect(warnings.filter { $0.kind == .jitter }.count == 3)
        #expect(warnings.last?.kind == .overrun)
        #expect(m.offCadence == 59)
    }

    @Test func missingLinesAreCountedAndTheirGapIsExpected() {
        var m = TimingMonitor(periodUs: 10_000)
        var warnings: [ExamWarning] = []
        for i in [0, 1, 2, 6, 7, 8, 9] as [UInt32] { warnings += m.add(Self.line(i, at: UInt64(i) * 10_000)) }
        #expect(warnings.map(\.kind) == [.missingLines])
        #expect(m.missingLines == 3)
    }
}
