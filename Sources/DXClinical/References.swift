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

/// A set of references a site configures, named and versioned so that every result can say
/// which it used.
public struct ReferenceSet: Sendable, Codable, Equatable {
    public var name: String
    public var version: String
    public var youngAdult: [YoungAdultReference]

    public func youngAdult(_ site: ReferenceSite) -> YoungAdultReference? { youngAdult.first { $0.site == site } }

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
