import Foundation
import Testing
@testable import DXClinical

/// The Z-score reference a site installs: the band for the patient's age and sex, the score
/// from it, and files that are not a reference refused with what is wrong.
@Suite struct AgeMatchedReferenceTests {
    /// SYNTHETIC numbers for the arithmetic only: no clinical table is built in
    /// (docs/clinical-references.md, "Z-scores").
    static let synthetic = AgeMatchedReference(
        name: "SYNTHETIC (tests only)", version: "0", population: "none: invented for the tests", scale: "none",
        source: Citation(text: "invented for Tests/DXClinicalTests"), status: .secondary,
        tables: [
            .init(site: .lumbarSpine, sex: .female, bands: [.init(ageFrom: 20, ageTo: 40, meanGCm2: 1.05, sdGCm2: 0.12),
                                                           .init(ageFrom: 40, ageTo: 50, meanGCm2: 1.02, sdGCm2: 0.12, n: 300),
                                                           .init(ageFrom: 50, ageTo: 60, meanGCm2: 0.96, sdGCm2: 0.13)]),
            .init(site: .femoralNeck, sex: .male, bands: [.init(ageFrom: 20, ageTo: 50, meanGCm2: 0.93, sdGCm2: 0.13)]),
        ])

    /// Z = (BMD − age- and sex-matched mean) / matched SD (WHO TRS 843, 1994): a woman of 45 with
    /// L1–L4 at 0.78 g/cm² against 1.02 ± 0.12 has Z = −2.0, below the expected range for age.
    @Test func theBandForTheAgeAndSexGivesTheScore() throws {
        let set = ReferenceSet.nhanes.with(ageMatched: Self.synthetic)
        #expect(set.zScore(0.78, site: .lumbarSpine, sex: .female, ageYears: 45) == -2.0)
        #expect(ZInterpretation(zScore: -2.0) == .belowExpectedRange)
        // Band edges: 40 is in the second band, 39.99 in the first.
        #expect(Self.synthetic.matched(.lumbarSpine, sex: .female, ageYears: 40)?.meanGCm2 == 1.02)
        #expect(Self.synthetic.matched(.lumbarSpine, sex: .female, ageYears: 39.99)?.meanGCm2 == 1.05)
        // 0.901 against 1.05 ± 0.12 is −1.2416…, reported −1.2.
        #expect(set.zScore(0.901, site: .lumbarSpine, sex: .female, ageYears: 30) == -1.2)
        // No table for the sex or site, no band for the age, no BMD: no Z-score.
        #expect(set.zScore(0.78, site: .lumbarSpine, sex: .male, ageYears: 45) == nil)
        #expect(set.zScore(0.78, site: .totalHip, sex: .female, ageYears: 45) == nil)
        #expect(set.zScore(0.78, site: .lumbarSpine, sex: .female, ageYears: 60) == nil)
        #expect(set.zScore(nil, site: .lumbarSpine, sex: .female, ageYears: 45) == nil)
        #expect(ReferenceSet.nhanes.zScore(0.78, site: .lumbarSpine, sex: .female, ageYears: 45) == nil)
        #expect(set.label == "NHANES \(ReferenceSet.nhanes.version); Z-scores: SYNTHETIC (tests only) 0")
    }

    @Test func aFileThatIsNotAReferenceIsRefusedWithWhy() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zref-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("z.json").path
        try JSONEncoder().encode(Self.synthetic).write(to: URL(fileURLWithPath: path))
        #expect(try AgeMatchedReference.load(path: path) == Self.synthetic)

        func broken(_ edit: (inout AgeMatchedReference) -> Void) -> AgeMatchedReference {
            var r = Self.synthetic
            edit(&r)
            return r
        }
        let cases: [(AgeMatchedReference, String)] = [
            (broken { $0.tables = [] }, "no tables"),
            (broken { $0.name = " " }, "a name and a version"),
            (broken { $0.source.text = "" }, "its source"),
            (broken { $0.tables[0].bands[1].sdGCm2 = 0 }, "an SD of 0.0"),
            (broken { $0.tables[0].bands[1].meanGCm2 = 5 }, "no adult's BMD"),
            (broken { $0.tables[0].bands[1].ageFrom = 30 }, "overlaps"),
            (broken { $0.tables[0].bands[2].ageTo = 50 }, "not a band"),
            (broken { $0.tables[1].bands = [] }, "no age bands"),
            (broken { $0.tables.append($0.tables[0]) }, "two tables for L1-L4 female"),
            (broken { $0.tables[0].bands[1].n = 0 }, "n 0"),
        ]
        for (reference, says) in cases {
            #expect(reference.problems.contains { $0.contains(says) }, "\(says): \(reference.problems)")
            try JSONEncoder().encode(reference).write(to: URL(fileURLWithPath: path))
            #expect(throws: ReferenceFileError.self) { try AgeMatchedReference.load(path: path) }
        }
        // NaN cannot be written as JSON, but a reference made in code is checked the same way.
        #expect(broken { $0.tables[0].bands[1].meanGCm2 = .nan }.problems.contains { $0.contains("no adult's BMD") })
        for garbage in ["", "{", "[]", #"{"name": "x"}"#, String(repeating: "z", count: 50_000),
                        #"{"name":"a","version":"1","population":"p","scale":"s","source":{"text":"t"},"status":"verified","tables":[{"site":"L5","sex":"female","bands":[]}]}"#] {
            try Data(garbage.utf8).write(to: URL(fileURLWithPath: path))
            do { _ = try AgeMatchedReference.load(path: path); Issue.record("loaded: \(garbage.prefix(30))") } catch {
                #expect(error.description.hasPrefix(path), "\(error)")
            }
        }
        #expect(throws: ReferenceFileError.self) { try AgeMatchedReference.load(path: dir.appendingPathComponent("missing.json").path) }
    }
}
