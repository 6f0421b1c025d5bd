@testable import DXAcquisition
import DXDecomposition
import Testing

@Suite("The image's rows for a screen")
struct ImageRowsTests {
    /// 0 is no number; 1–255 span 0 to 2 g/cm²; outside that range the ends.
    @Test func bytesSpanZeroToFullScale() {
        let q = ImageRows.quantised([.nan, .infinity, -0.3, 0, 1, 2, 5, 2.0 / 254])
        #expect(q == [0, 0, 1, 1, 128, 255, 255, 2])
    }

    /// The batch hands each row once, in the order the pipeline decomposed them.
    @Test func aBatchGivesEachRowOnce() {
        let batch = RowBatch()
        func line(_ i: UInt32) -> DecomposedLine {
            DecomposedLine(index: i, yUm: 0, xUm: 0, bone: [0.5, .nan], soft: [0, 0], fatFraction: [0, 0], isBone: [true, false], flags: [[], [.saturated]])
        }
        batch.add(line(0)); batch.add(line(1))
        #expect(batch.take().map(\.line) == [0, 1])
        #expect(batch.take().isEmpty)
        batch.add(line(2))
        #expect(batch.take() == [ImageRows.Row(line: 2, bone: [65, 0])])
    }
}
