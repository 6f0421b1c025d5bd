import Foundation

/// Reference data for T- and Z-scores, each value with its source and how far it has been
/// checked (docs/clinical-references.md). A value not checked against its primary source says
/// so wherever it is used: a report computed from it carries the status.

/// How a reference number is known.
public enum ReferenceStatus: String, Sendable, Codable, Equatable {
    /// Read in the primary source (the paper's table, or its abstract where the number is there).
    case verified
    /// Quoted consistently by others, not yet read in the primary source: usable for
    /// development and demonstration, to be confirmed before clinical release.
    case secondary
}

/// A published source.
public struct Citation: Sendable, Codable, Equatable {
    public var text: String
    public var doi: String?
    public init(text: String, doi: String? = nil) { self.text = text; self.doi = doi }
}

/// The skeletal sites with a reference (the names `dexa analyze` uses for its ROIs).
public enum ReferenceSite: String, Sendable, Codable, CaseIterable, Equatable {
    case lumbarSpine = "L1-L4"
    case femoralNeck = "neck"
    case totalHip = "total_hip"
}

/// A young-adult reference for one site: the mean and SD of BMD in the reference population.
public struct YoungAdultReference: Sendable, Codable, Equatable {
    public var site: ReferenceSite
    public var meanGCm2: Double
    public var sdGCm2: Double
    /// Who was measured (sex, age band, ethnicity, survey).
    public var population: String
    /// The densitometer scale the numbers are on.
    public var scale: String
    public var source: Citation
    public var status: ReferenceStatus

    public init(site: ReferenceSite, meanGCm2: Double, sdGCm2: Double, population: String, scale: String, source: Citation, status: ReferenceStatus) {
        self.site = site; self.meanGCm2 = meanGCm2; self.sdGCm2 = sdGCm2; self.population = population; self.scale = scale
        self.source = source; self.status = status
    }
}

/// An age- and sex-matched reference for Z-scores: per site and sex, the mean and SD of BMD by
/// age band, with its population, scale and source. None is built in (no table has been read
/// in its primary source here: docs/clinical-references.md); a site installs the one it uses
/// (the manufacturer's database, or local data as ISCD allows for Z-scores) as a JSON file
/// (`z_reference` in dexad.conf, `--z-reference` for `dexa analyze`).
public struct AgeMatchedReference: Sendable, Codable, Equatable {
    /// Ages from `ageFrom` up to, not including, `ageTo` (years).
    public struct Band: Sendable, Codable, Equatable {
        public var ageFrom: Double
        public var ageTo: Double
        public var meanGCm2: Double
        public var sdGCm2: Double
        /// How many people the band's mean and SD come from, when the source says.
        public var n: Int?

        public enum CodingKeys: String, CodingKey {
            case n
            case ageFrom = "age_from", ageTo = "age_to", meanGCm2 = "mean_g_cm2", sdGCm2 = "sd_g_cm2"
        }

        public init(ageFrom: Double, ageTo: Double, meanGCm2: Double, sdGCm2: Double, n: Int? = nil) {
            self.ageFrom = ageFrom; self.ageTo = ageTo; self.meanGCm2 = meanGCm2; self.sdGCm2 = sdGCm2; self.n = n
        }
    }

    public struct Table: Sendable, Codable, Equatable {
        public var site: ReferenceSite
        public var sex: Applicability.Sex
        public var bands: [Band]
        public init(site: ReferenceSite, sex: Applicability.Sex, bands: [Band]) { self.site = site; self.sex = sex; self.bands = bands }
    }

    public var name: String
    public var version: String
    /// Who was measured (ethnicity, survey or cohort).
    public var population: String
    /// The densitometer scale the numbers are on.
    public var scale: String
    public var source: Citation
    public var status: ReferenceStatus
    public var tables: [Table]

    public init(name: String, version: String, population: String, scale: String, source: Citation, status: ReferenceStatus, tables: [Table]) {
        self.name = name; self.version = version; self.population = population; self.scale = scale; self.source = source
        self.status = status; self.tables = tables
    }

    /// The band a patient of `sex` aged `ageYears` falls in at `site`, or nil (no table, or an
    /// age outside it: no Z-score rather than one from another age).
    public func matched(_ site: ReferenceSite, sex: Applicability.Sex, ageYears: Double) -> Band? {
        tables.first { $0.site == site && $0.sex == sex }?.bands.first { $0.ageFrom <= ageYears && ageYears < $0.ageTo }
    }

    /// What makes the file unusable: each problem names its table and band.
    public var problems: [String] {
        var out: [String] = []
        if name.trimmingCharacters(in: .whitespaces).isEmpty || version.trimmingCharacters(in: .whitespaces).isEmpty {
            out.append("the reference needs a name and a version")
        }
        if source.text.trimmingCharacters(in: .whitespaces).isEmpty { out.append("the reference needs its source") }
        if tables.isEmpty { out.append("the reference has no tables") }
        var seen = Set<String>()
        for t in tables {
            let which = "\(t.site.rawValue) \(t.sex.rawValue)"
            if !seen.insert(which).inserted { out.append("two tables for \(which)") }
            if t.bands.isEmpty { out.append("\(which): no age bands") }
            for (i, b) in t.bands.enumerated() {
                let band = "\(which) band \(i + 1)"
                if !(b.ageFrom.isFinite && b.ageTo.isFinite && b.ageFrom >= 0 && b.ageTo <= 130 && b.ageFrom < b.ageTo) {
                    out.append("\(band): ages \(b.ageFrom) to \(b.ageTo) are not a band of 0 to 130 years")
                }
                if !(b.meanGCm2.isFinite && (0.1...3.0).contains(b.meanGCm2)) { out.append("\(band): a mean of \(b.meanGCm2) g/cm² is no adult's BMD") }
                if !(b.sdGCm2.isFinite && (0.01...0.5).contains(b.sdGCm2)) { out.append("\(band): an SD of \(b.sdGCm2) g/cm² is not a population's") }
                if let n = b.n, n < 1 { out.append("\(band): n \(n)") }
                if i > 0, b.ageFrom < t.bands[i - 1].ageTo { out.append("\(band): overlaps the band before it (bands run in order of age)") }
            }
        }
        return out
    }

    /// Reads and checks an installed reference; the error says what is wrong with the file.
    public static func load(path: String) throws(ReferenceFileError) -> AgeMatchedReference {
        guard let data = FileManager.default.contents(atPath: path) else { throw ReferenceFileError(path: path, why: "cannot be read") }
        return try parse(data, path: path)
    }

    /// A reference file's bytes, checked as `load` checks them; `path` names it in messages.
    public static func parse(_ data: Data, path: String) throws(ReferenceFileError) -> AgeMatchedReference {
        let reference: AgeMatchedReference
        do { reference = try JSONDecoder().decode(AgeMatchedReference.self, from: data) } catch {
            throw ReferenceFileError(path: path, why: "is not an age-matched reference (\(error))")
        }
        let problems = reference.problems
        guard problems.isEmpty else { throw ReferenceFileError(path: path, why: problems.joined(separator: "; ")) }
        return reference
    }
}

public struct ReferenceFileError: Error, Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var why: String
    public var description: String { "\(path) \(why)" }
}

/// A set of references a site configures, named and versioned so that every result can say
/// which it used.
public struct ReferenceSet: Sendable, Codable, Equatable {
    public var name: String
    public var version: String
    public var youngAdult: [YoungAdultReference]
    /// The Z-score reference, when one is installed.
    public var ageMatched: AgeMatchedReference?

    public func youngAdult(_ site: ReferenceSite) -> YoungAdultReference? { youngAdult.first { $0.site == site } }

    /// The set with an installed Z-score reference.
    public func with(ageMatched: AgeMatchedReference?) -> ReferenceSet {
        var r = self
        r.ageMatched = ageMatched
        return r
    }

    /// "NHANES 2026-12-02.1", and the Z-score reference's name and version when there is one.
    public var label: String {
        "\(name) \(version)" + (ageMatched.map { "; Z-scores: \($0.name) \($0.version)" } ?? "")
    }

    /// The Z-score of `bmd` for a patient, as reported (one decimal), or nil (no reference,
    /// no band for the age).
    public func zScore(_ bmd: Double?, site: ReferenceSite, sex: Applicability.Sex, ageYears: Double) -> Double? {
        guard let bmd, let band = ageMatched?.matched(site, sex: sex, ageYears: ageYears) else { return nil }
        return standardScore(bmdGCm2: bmd, meanGCm2: band.meanGCm2, sdGCm2: band.sdGCm2).map(reportedScore)
    }

    /// The default: NHANES III white women aged 20–29 for the femoral neck and total hip, for
    /// women and men alike (ISCD 2013/2019: Watts et al. 2013), and the NHANES 2005–2014 peak
    /// in white women for the lumbar spine (Xue et al. 2021), all on the Hologic scale.
    /// This device's BMD is its own calibration of hydroxyapatite: using these references
    /// assumes a cross-calibration to that scale (docs/clinical-references.md).
    public static let nhanes = ReferenceSet(name: "NHANES", version: "2026-12-02.1", youngAdult: [
        YoungAdultReference(
            site: .femoralNeck, meanGCm2: 0.858, sdGCm2: 0.120,
            population: "non-Hispanic white women aged 20–29, NHANES III (1988–94)", scale: "Hologic QDR-1000",
            source: Citation(text: "Looker AC et al. Updated data on proximal femur bone mineral levels of US adults. Osteoporos Int 1998;8:468–489; the pair as used by Kanis JA et al., Bone 2008;42:467–475",
                             doi: "10.1007/s001980050093"),
            status: .secondary),
        YoungAdultReference(
            site: .totalHip, meanGCm2: 0.942, sdGCm2: 0.122,
            population: "non-Hispanic white women aged 20–29, NHANES III (1988–94)", scale: "Hologic QDR-1000",
            source: Citation(text: "Looker AC et al. Updated data on proximal femur bone mineral levels of US adults. Osteoporos Int 1998;8:468–489",
                             doi: "10.1007/s001980050093"),
            status: .secondary),
        YoungAdultReference(
            site: .lumbarSpine, meanGCm2: 1.065, sdGCm2: 0.122,
            population: "non-Hispanic white women at peak BMD (±5 years), NHANES 2005–2014", scale: "Hologic QDR-4500A (APEX)",
            source: Citation(text: "Xue S et al. An updated reference for calculating bone mineral density T-scores. J Clin Endocrinol Metab 2021",
                             doi: "10.1210/clinem/dgab180"),
            status: .verified),
    ])
}
