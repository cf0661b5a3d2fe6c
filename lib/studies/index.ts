/** The paper's findings as paired comparisons, and the reproduction study that tests them. */
export { PAPER_FINDINGS, assessFindings, compare, findingsMarkdown } from './findings';
export type { Finding, Comparison, ComparisonResult, FindingResult, Verdict } from './findings';
export { runReproduction, readStudyPlans, planCellCount, STUDY_PLANS } from './reproduction';
export type { StudyOptions, StudyPlanName } from './reproduction';
